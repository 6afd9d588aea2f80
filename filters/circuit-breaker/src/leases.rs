//! Which worker VM writes which window stripe. A VM leases a stripe number for itself on its first
//! recorded call and renews the lease from a timer (and when it records) for as long as it lives; a VM
//! that stopped (restarted by `FAIL_RELOAD`, replaced by a new module) stops renewing, so after
//! [`LEASE_SECS`] its stripes are no longer read and its number is leased again. The table is one shared-data value, read once per recorded call in place of a plain
//! stripe counter, so the cost of a call follows the live workers, not every VM ever started.

/// Most stripe numbers (and so most concurrently recording worker VMs). It multiplies the worst-case
/// shared memory of every breaker key, so it is sized for sidecars (2 workers by default, and one more
/// set for 5 minutes across a module update) rather than for a 64-core gateway, whose workers past it
/// still decide on their own calls.
pub const MAX_STRIPES: usize = 64;
/// A lease not renewed for this long is over: its stripe is no longer read and its number is free.
pub const LEASE_SECS: u64 = 300;
/// A VM renews its lease when it is older than this.
pub const RENEW_AFTER_SECS: u64 = 60;

/// A lease renewed at `renewed_s` is due for renewal at `now_s` (a clock stepping back keeps it fresh,
/// as it keeps a lease live).
pub fn renewal_due(renewed_s: u64, now_s: u64) -> bool {
    now_s.saturating_sub(renewed_s) >= RENEW_AFTER_SECS
}

const VERSION: u8 = 1;
const ENTRY_BYTES: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lease {
    /// A random id per VM; 0 for a number never leased.
    pub owner: u64,
    pub renewed_s: u64,
}

impl Lease {
    /// Taken and renewed within the lease time (a clock stepping back keeps a lease alive).
    fn live(&self, now_s: u64) -> bool {
        self.owner != 0 && now_s.saturating_sub(self.renewed_s) < LEASE_SECS
    }
}

/// The lease table, indexed by stripe number.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    leases: Vec<Lease>,
}

impl Table {
    /// Reads a table; anything malformed reads as an empty table (every number free).
    pub fn decode(bytes: &[u8]) -> Table {
        let Some((&VERSION, rest)) = bytes.split_first() else {
            return Table::default();
        };
        let leases = rest
            .chunks_exact(ENTRY_BYTES)
            .take(MAX_STRIPES)
            .filter_map(|c| {
                let (owner, renewed) = c.split_first_chunk::<8>()?;
                Some(Lease {
                    owner: u64::from_le_bytes(*owner),
                    renewed_s: u64::from_le_bytes(*renewed.first_chunk::<8>()?),
                })
            })
            .collect();
        Table { leases }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + self.leases.len() * ENTRY_BYTES);
        out.push(VERSION);
        for l in &self.leases {
            out.extend_from_slice(&l.owner.to_le_bytes());
            out.extend_from_slice(&l.renewed_s.to_le_bytes());
        }
        out
    }

    /// Live leases as (stripe number, owner).
    pub fn live(&self, now_s: u64) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.leases
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.live(now_s))
            .map(|(i, l)| (i, l.owner))
    }

    /// `owner` holds a live lease on `stripe`.
    pub fn holds(&self, stripe: usize, owner: u64, now_s: u64) -> bool {
        self.leases
            .get(stripe)
            .is_some_and(|l| l.owner == owner && l.live(now_s))
    }

    /// `owner`'s lease on `stripe` is due for renewal (or is no longer held).
    pub fn due(&self, stripe: usize, owner: u64, now_s: u64) -> bool {
        self.leases
            .get(stripe)
            .is_none_or(|l| l.owner != owner || renewal_due(l.renewed_s, now_s))
    }

    /// Renews `owner`'s lease on `stripe` if it still holds it or nobody took the number since.
    pub fn renew(&mut self, stripe: usize, owner: u64, now_s: u64) -> bool {
        match self.leases.get_mut(stripe) {
            Some(l) if l.owner == owner || !l.live(now_s) => {
                *l = Lease {
                    owner,
                    renewed_s: now_s,
                };
                true
            }
            _ => false,
        }
    }

    /// Leases the lowest free or expired number to `owner`; `None` when all are live.
    pub fn claim(&mut self, owner: u64, now_s: u64) -> Option<usize> {
        let lease = Lease {
            owner,
            renewed_s: now_s,
        };
        if let Some((i, l)) = self
            .leases
            .iter_mut()
            .enumerate()
            .find(|(_, l)| !l.live(now_s))
        {
            *l = lease;
            return Some(i);
        }
        if self.leases.len() < MAX_STRIPES {
            self.leases.push(lease);
            return Some(self.leases.len() - 1);
        }
        None
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    #[test]
    fn claims_the_lowest_free_number_and_round_trips() {
        let mut t = Table::default();
        assert_eq!(t.claim(11, T), Some(0));
        assert_eq!(t.claim(22, T), Some(1));
        let back = Table::decode(&t.encode());
        assert_eq!(back, t);
        assert_eq!(back.live(T).collect::<Vec<_>>(), vec![(0, 11), (1, 22)]);
        assert!(back.holds(1, 22, T));
        assert!(!back.holds(1, 11, T));
    }

    #[test]
    fn a_lease_not_renewed_ends_and_its_number_is_reused() {
        let mut t = Table::default();
        t.claim(11, T);
        t.claim(22, T);
        let later = T + LEASE_SECS - 1;
        assert!(t.renew(1, 22, later));
        assert_eq!(t.live(later).count(), 2, "not over yet");
        let expired = T + LEASE_SECS;
        assert_eq!(t.live(expired).collect::<Vec<_>>(), vec![(1, 22)]);
        assert!(!t.holds(0, 11, expired));
        // A new VM takes the dead one's number rather than growing the table.
        assert_eq!(t.claim(33, expired), Some(0));
        assert_eq!(t.live(expired).count(), 2);
        // The old owner cannot renew a number someone else holds now.
        assert!(!t.renew(0, 11, expired));
        // ...but may take its number back if nobody did.
        let mut u = Table::default();
        u.claim(11, T);
        assert!(u.renew(0, 11, T + 10 * LEASE_SECS));
        assert!(u.holds(0, 11, T + 10 * LEASE_SECS));
    }

    #[test]
    fn renewal_is_due_only_after_a_while() {
        let mut t = Table::default();
        t.claim(11, T);
        assert!(!t.due(0, 11, T + RENEW_AFTER_SECS - 1));
        assert!(t.due(0, 11, T + RENEW_AFTER_SECS));
        assert!(t.due(0, 99, T), "not ours");
        assert!(t.due(5, 11, T), "no such number");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t = Table::default();
        for owner in 1..=MAX_STRIPES as u64 {
            assert!(t.claim(owner, T).is_some());
        }
        assert_eq!(t.claim(999, T), None);
        assert_eq!(t.encode().len(), 1 + MAX_STRIPES * ENTRY_BYTES);
        // Once leases end, numbers come back.
        assert_eq!(t.claim(999, T + LEASE_SECS), Some(0));
    }

    #[test]
    fn a_clock_stepping_back_keeps_leases_alive() {
        let mut t = Table::default();
        t.claim(11, T);
        assert!(t.holds(0, 11, T - 3600));
    }

    #[test]
    fn malformed_tables_read_as_empty_or_truncated() {
        assert_eq!(Table::decode(&[]), Table::default());
        assert_eq!(Table::decode(&[9, 1, 2, 3]), Table::default());
        let mut t = Table::default();
        t.claim(11, T);
        let mut bytes = t.encode();
        bytes.extend_from_slice(&[1, 2, 3]);
        assert_eq!(Table::decode(&bytes), t, "a partial entry is dropped");
        let huge = [vec![VERSION], vec![1u8; ENTRY_BYTES * (MAX_STRIPES + 5)]].concat();
        assert_eq!(Table::decode(&huge).leases.len(), MAX_STRIPES);
    }
}
