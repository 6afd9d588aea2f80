//! What the stale cache may keep and for how long, from the response's `Cache-Control`, `Age` and
//! `Vary` (RFC 9111 for a shared cache, RFC 5861 `stale-if-error`). This filter serves cached responses
//! only when the upstream fails; serving them stale at all is the operator's out-of-band permission (the
//! rule's `ttl`, RFC 9111 §4.2.4), which the response's own directives can only narrow.

use filter_common::headers::{trim_ows as trim, HeaderMap};

/// The `Cache-Control` directives that decide storing and serving: a response's, or a caller's own
/// (RFC 9111 §5.2.1; one parser for both keeps the module small). Names are case-insensitive; a
/// directive given twice keeps its most restrictive value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheControl {
    pub no_store: bool,
    /// `no-cache` in any form (with or without field names): never reused without a successful
    /// validation, which an error is not.
    pub no_cache: bool,
    /// `private` in any form: the qualified form is treated as the whole response being private.
    pub private: bool,
    pub must_revalidate: bool,
    pub proxy_revalidate: bool,
    pub max_age: Option<u64>,
    pub s_maxage: Option<u64>,
    pub stale_if_error: Option<u64>,
    /// A request's `max-stale` (§5.2.1.2): `Some(None)` without a value (any staleness), else at most
    /// that many seconds past the freshness lifetime.
    pub max_stale: Option<Option<u64>>,
}

/// RFC 9111 §1.2.2: a delta-seconds too large to represent counts as 2^31.
const DELTA_MAX: u64 = 1 << 31;

/// `1*DIGIT`, saturated at 2^31; `None` when malformed.
fn delta_seconds(s: &[u8]) -> Option<u64> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u64, |acc, d| {
        (acc * 10 + u64::from(d - b'0')).min(DELTA_MAX)
    }))
}

/// The elements of a list field value: split at commas outside quoted strings, without allocating (a
/// caller's `Cache-Control` is read on the request path).
fn split_list(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in v.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == b',' && !quoted {
                rest = v.get(i + 1..);
                return v.get(..i);
            }
        }
        rest = None;
        Some(v)
    })
}

/// Every directive of every `Cache-Control` line: its name (any case) and argument (quotes removed;
/// empty when none), whitespace trimmed, without allocating.
fn directives<'a>(
    lines: impl IntoIterator<Item = &'a [u8]>,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    lines.into_iter().flat_map(split_list).map(|directive| {
        let directive = trim(directive);
        let (name, arg) = match directive.iter().position(|&b| b == b'=') {
            Some(eq) => (
                directive.get(..eq).unwrap_or_default(),
                directive.get(eq + 1..).unwrap_or_default(),
            ),
            None => (directive, &b""[..]),
        };
        let arg = trim(arg);
        let arg = arg
            .strip_prefix(b"\"")
            .and_then(|a| a.strip_suffix(b"\""))
            .unwrap_or(arg);
        (trim(name), arg)
    })
}

/// Keeps the smaller of an earlier and a new value (the most restrictive reading of a repeated
/// directive); a malformed number reads as 0, the strictest.
fn keep_min(slot: &mut Option<u64>, arg: &[u8]) {
    let v = delta_seconds(arg).unwrap_or(0);
    *slot = Some(slot.map_or(v, |old| old.min(v)));
}

impl CacheControl {
    /// Every `Cache-Control` line of a response, taken together.
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> CacheControl {
        let mut cc = CacheControl::default();
        for (name, arg) in directives(lines) {
            let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
            if is(b"no-store") {
                cc.no_store = true;
            } else if is(b"no-cache") {
                cc.no_cache = true;
            } else if is(b"private") {
                cc.private = true;
            } else if is(b"must-revalidate") {
                cc.must_revalidate = true;
            } else if is(b"proxy-revalidate") {
                cc.proxy_revalidate = true;
            } else if is(b"max-age") {
                keep_min(&mut cc.max_age, arg);
            } else if is(b"s-maxage") {
                keep_min(&mut cc.s_maxage, arg);
            } else if is(b"stale-if-error") {
                keep_min(&mut cc.stale_if_error, arg);
            } else if is(b"max-stale") {
                let mut bound = cc.max_stale.flatten();
                if !arg.is_empty() {
                    keep_min(&mut bound, arg);
                }
                cc.max_stale = Some(bound);
            }
        }
        cc
    }

    /// The response forbids any reuse without validation (RFC 9111 §5.2.2.4, .5, .7): as the origin's
    /// newest word for its key, it also ends an older entry's serving.
    pub fn forbids_reuse(&self) -> bool {
        self.no_store || self.private || self.no_cache
    }

    /// The freshness lifetime a shared cache uses (§4.2.1): `s-maxage`, else `max-age`, else 0
    /// (`Expires` and heuristics are not used, which can only make a response count as staler).
    pub fn lifetime(&self) -> u64 {
        self.s_maxage.or(self.max_age).unwrap_or(0)
    }
}

/// A caller's own `Cache-Control` (RFC 9111 §5.2.1, RFC 5861 §4). Its freshness preferences
/// (`max-age`, `min-fresh`) are not used: serving on error disregards freshness (RFC 5861 §4), and a
/// browser's reload sends `max-age=0`.
impl CacheControl {
    /// Whether the caller takes no stored answer at all: `no-cache` asks for a validated answer
    /// (§5.2.1.4), which an error is not; `no-store` forbids storing the response to it (§5.2.1.5),
    /// and, stricter than that section asks, a caller who wants caches to keep nothing is given
    /// nothing stored either.
    pub fn refuses_stored(&self) -> bool {
        self.no_store || self.no_cache
    }

    /// Whether the caller accepts, on error, an answer `staleness_s` seconds past its freshness
    /// lifetime. Without either directive the caller sets no bound (the rule's `ttl` and the response's
    /// own directives still do). Each directive says what the caller accepts, so on error it accepts
    /// what either accepts: `max-stale` (what it would take even without an error) or `stale-if-error`
    /// (RFC 5861's "absent other information"). A caller can only narrow: its directives never lift
    /// the response's own limits, which are checked first.
    pub fn accepts(&self, staleness_s: u64) -> bool {
        let within = |bound: Option<u64>| bound.is_some_and(|b| staleness_s <= b);
        match (self.max_stale, self.stale_if_error) {
            (None, None) | (Some(None), _) => true,
            (Some(max_stale), sie) => within(max_stale) || within(sie),
            (None, sie) => within(sie),
        }
    }
}

/// How long after it was stored a good response may be served on error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Never: not stored.
    Never,
    /// As long as the rule's `ttl` allows.
    Ttl,
    /// At most this many seconds (and at most the rule's `ttl`).
    Secs(u64),
}

/// The serving window of a response with these directives, `age` seconds old when it arrived (its
/// `Age` header). A shared cache uses `s-maxage` over `max-age` as the freshness lifetime (RFC 9111
/// §4.2.1); `Expires` and heuristic freshness are not used, which can only make the window shorter.
///
/// - `no-store`, `private`, `no-cache`: never.
/// - `must-revalidate`, `proxy-revalidate`, or any `s-maxage` (which carries proxy-revalidate for a
///   shared cache, §5.2.2.10): only while still fresh. Serving a fresh response is no stale serving
///   (any cache could have answered with it without asking the origin); once stale these directives
///   forbid it (§4.2.4), and `stale-if-error` does not lift that prohibition.
/// - `stale-if-error=N` (RFC 5861 §4): until N seconds past the freshness lifetime.
/// - otherwise: the rule's ttl.
pub fn window(cc: &CacheControl, age: u64) -> Window {
    if cc.forbids_reuse() {
        return Window::Never;
    }
    let lifetime = cc.s_maxage.or(cc.max_age);
    let until = |limit: u64| match limit.saturating_sub(age) {
        0 => Window::Never,
        left => Window::Secs(left),
    };
    if cc.must_revalidate || cc.proxy_revalidate || cc.s_maxage.is_some() {
        return until(lifetime.unwrap_or(0));
    }
    match cc.stale_if_error {
        Some(extra) => until(lifetime.unwrap_or(0).saturating_add(extra)),
        None => Window::Ttl,
    }
}

/// A response's `Age`, the largest valid value when it repeats (0 when absent or malformed).
pub fn age<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> u64 {
    lines
        .into_iter()
        .filter_map(|v| delta_seconds(trim(v)))
        .max()
        .unwrap_or(0)
}

/// The most bytes of `Vary` field names an entry keeps; a response varying on more is not stored.
pub const MAX_VARY_BYTES: usize = 256;

/// The request headers a response varies on (every `Vary` line; names lower case, each once, in
/// order). `None` for `Vary: *`, a malformed name, or names longer than [`MAX_VARY_BYTES`] in all:
/// such a response is not stored.
pub fn vary_names<'a>(lines: impl IntoIterator<Item = &'a [u8]>) -> Option<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    let mut bytes = 0;
    for line in lines {
        for name in split_list(line) {
            let name = trim(name);
            if name.is_empty() {
                continue;
            }
            if name == b"*" || !filter_common::http_field::is_token(name) {
                return None;
            }
            let name = String::from_utf8_lossy(name).to_ascii_lowercase();
            if !names.contains(&name) {
                bytes += name.len() + 1;
                if bytes > MAX_VARY_BYTES {
                    return None;
                }
                names.push(name);
            }
        }
    }
    Some(names)
}

/// The selecting values of a request for `names`, hashed (the stored entry keeps the hash, so its size
/// does not depend on the values). Values are normalised as RFC 9111 §4.1 allows: the field's lines
/// combined as one list and whitespace around its elements removed; case and order stay significant. An
/// absent header differs from an empty one.
pub fn vary_hash(names: &[String], request: &HeaderMap) -> u128 {
    let values: Vec<Option<Vec<u8>>> = names
        .iter()
        .map(|name| {
            let mut lines = request.get_all(name).peekable();
            lines.peek()?;
            let mut combined = Vec::new();
            for (i, element) in lines.flat_map(split_list).enumerate() {
                if i > 0 {
                    combined.push(b',');
                }
                combined.extend_from_slice(trim(element));
            }
            Some(combined)
        })
        .collect();
    let parts: Vec<Option<&[u8]>> = names
        .iter()
        .map(|n| Some(n.as_bytes()))
        .chain(values.iter().map(|v| v.as_deref()))
        .collect();
    crate::cache::key(b"vary", b"", &parts)
}

/// The longest `content-type` a cached entry keeps; a response with a longer one is not stored (the
/// memory ceiling counts entries at this size).
pub const MAX_CONTENT_TYPE_LEN: usize = 256;

/// What the cache keeps of a storable response besides its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Storable {
    pub content_type: String,
    /// Its `Age` when it arrived.
    pub initial_age_s: u32,
    /// Its freshness lifetime ([`CacheControl::lifetime`]): how stale it is, for a caller's bounds.
    pub lifetime_s: u32,
    /// How long after storing it may be served at most; `u64::MAX` when only the rule's ttl bounds it.
    pub serve_for_ns: u64,
    pub vary: Vec<String>,
}

/// Why a good response is not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotStored {
    /// Its `Cache-Control` forbids any reuse without validation (`no-store`, `private`, `no-cache`):
    /// the origin's newest word for the key, so an older stored entry of the key is removed too (a
    /// resource that became private stops being served).
    ForbidsReuse,
    /// Anything else (its serving window, `Vary: *`, cookies, an encoding, its size): an older entry
    /// still stands on its own directives.
    Unsuitable,
}

/// Whether a good response (its headers) may be stored for other callers, and what of it: not
/// `no-store`/`no-cache`/`private`, servable on error for some time ([`window`]), not `Vary: *`, not
/// setting cookies, not encoded (the encoding is not part of the key), not announced larger than
/// `limit`, and with a content type of at most [`MAX_CONTENT_TYPE_LEN`].
pub fn storable(response: &HeaderMap, limit: usize) -> Result<Storable, NotStored> {
    let cc = CacheControl::parse(response.get_all("cache-control"));
    if cc.forbids_reuse() {
        return Err(NotStored::ForbidsReuse);
    }
    let encoded = response
        .get_all("content-encoding")
        .any(|e| !e.eq_ignore_ascii_case(b"identity"));
    let too_long = response
        .get_first("content-length")
        .and_then(|l| std::str::from_utf8(l).ok()?.trim().parse::<usize>().ok())
        .is_some_and(|l| l > limit);
    if encoded || too_long || response.contains("set-cookie") {
        return Err(NotStored::Unsuitable);
    }
    let age = age(response.get_all("age"));
    let serve_for_ns = match window(&cc, age) {
        Window::Never => return Err(NotStored::Unsuitable),
        Window::Ttl => u64::MAX,
        Window::Secs(s) => s.saturating_mul(1_000_000_000),
    };
    let vary = vary_names(response.get_all("vary")).ok_or(NotStored::Unsuitable)?;
    let content_type = response
        .get_first("content-type")
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap_or_default();
    if content_type.len() > MAX_CONTENT_TYPE_LEN {
        return Err(NotStored::Unsuitable);
    }
    Ok(Storable {
        content_type,
        initial_age_s: u32::try_from(age).unwrap_or(u32::MAX),
        lifetime_s: u32::try_from(cc.lifetime()).unwrap_or(u32::MAX),
        serve_for_ns,
        vary,
    })
}

/// Whether a request carries a header that makes its response its caller's own: one of
/// `private_headers` that is not also a key header (a key header gives each value its own entry).
pub fn is_private(request: &HeaderMap, private_headers: &[String], key_headers: &[String]) -> bool {
    private_headers
        .iter()
        .any(|h| !key_headers.contains(h) && request.contains(h))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn cc(lines: &[&str]) -> CacheControl {
        CacheControl::parse(lines.iter().map(|l| l.as_bytes()))
    }

    #[test]
    fn directives_parse_across_lines_case_and_quotes() {
        let c = cc(&[
            "Max-Age=60, no-cache=\"set-cookie, x-a\"",
            "S-MAXAGE=\"30\" , private=\"x\"",
        ]);
        assert!(c.no_cache && c.private && !c.no_store && !c.must_revalidate);
        assert_eq!((c.max_age, c.s_maxage), (Some(60), Some(30)));
        // The comma inside the quoted no-cache argument did not start a directive named `x-a"`.
        let c = cc(&["no-cache=\"a, must-revalidate\""]);
        assert!(c.no_cache && !c.must_revalidate);
        // Nor one named `max-age` (RFC 9110 §5.6.4: a quoted-string runs to its closing quote, and a
        // backslash-escaped quote does not close it).
        assert_eq!(cc(&["private=\"a, max-age=5\""]).max_age, None);
        assert_eq!(cc(&["private=\"a\\\", max-age=5\""]).max_age, None);
        assert_eq!(cc(&["private=\"a\\\\\", max-age=5"]).max_age, Some(5));
        let c = cc(&[
            "max-age=60",
            "max-age=10",
            "stale-if-error=abc",
            "must-revalidate",
        ]);
        assert_eq!(c.max_age, Some(10), "the stricter of two values");
        assert_eq!(c.stale_if_error, Some(0), "malformed reads as 0");
        assert!(c.must_revalidate);
        assert_eq!(
            cc(&["max-age=99999999999999999999999"]).max_age,
            Some(DELTA_MAX)
        );
        assert_eq!(cc(&[]), CacheControl::default());
        assert_eq!(cc(&["nostore, no-stores"]), CacheControl::default());
    }

    #[test]
    fn windows_follow_rfc_9111_and_5861() {
        let w = |lines: &[&str], age| window(&cc(lines), age);
        for never in [
            &["no-store"][..],
            &["private, max-age=60"],
            &["no-cache"],
            &["max-age=60, no-cache=\"set-cookie\""],
            &["must-revalidate"],
            &["max-age=0, must-revalidate"],
            &["max-age=0, proxy-revalidate"],
            &["s-maxage=0, max-age=60"],
            &["max-age=0, stale-if-error=0"],
            &["max-age=0, must-revalidate, stale-if-error=60"],
        ] {
            assert_eq!(w(never, 0), Window::Never, "{never:?}");
        }
        assert_eq!(w(&[], 0), Window::Ttl);
        assert_eq!(
            w(&["max-age=0"], 0),
            Window::Ttl,
            "stale serving is the rule's ttl"
        );
        assert_eq!(w(&["max-age=60, public"], 500), Window::Ttl);
        assert_eq!(
            w(&["max-age=60, must-revalidate"], 0),
            Window::Secs(60),
            "fresh"
        );
        assert_eq!(w(&["max-age=60, must-revalidate"], 45), Window::Secs(15));
        assert_eq!(w(&["max-age=60, must-revalidate"], 60), Window::Never);
        assert_eq!(w(&["s-maxage=30, max-age=600"], 0), Window::Secs(30));
        assert_eq!(w(&["stale-if-error=5"], 0), Window::Secs(5));
        assert_eq!(w(&["max-age=10, stale-if-error=5"], 3), Window::Secs(12));
        assert_eq!(w(&["max-age=2, stale-if-error=1"], 5), Window::Never);
    }

    /// A caller's directives.
    fn req(lines: &[&str]) -> CacheControl {
        cc(lines)
    }

    #[test]
    fn a_caller_s_no_store_or_no_cache_refuses_stored_answers() {
        for lines in [
            &["no-store"][..],
            &["No-Cache"],
            &["max-age=0", "no-cache=\"x\""],
            &["max-stale, NO-STORE"],
        ] {
            assert!(req(lines).refuses_stored(), "{lines:?}");
        }
        for lines in [
            &[][..],
            &["max-age=0"],
            &["max-stale"],
            &["no-cachex"],
            &["x=\"no-cache\""],
        ] {
            assert!(!req(lines).refuses_stored(), "{lines:?}");
        }
        assert!(req(&["no-store"]).no_store && !req(&["no-cache"]).no_store);
    }

    #[test]
    fn a_caller_s_max_stale_and_stale_if_error_bound_the_staleness_it_accepts() {
        let accepts = |lines: &[&str], staleness| req(lines).accepts(staleness);
        // No bound of its own.
        assert!(accepts(&[], u64::MAX));
        assert!(
            accepts(&["max-age=0, min-fresh=60"], 1000),
            "freshness preferences are not read"
        );
        // max-stale without a value: any staleness.
        assert!(accepts(&["max-stale"], u64::MAX));
        assert!(accepts(&["max-stale", "stale-if-error=5"], 100));
        // A value bounds it, inclusive.
        assert!(accepts(&["max-stale=10"], 10));
        assert!(!accepts(&["max-stale=10"], 11));
        assert!(accepts(&["Max-Stale=\"10\""], 10));
        assert!(!accepts(&["stale-if-error=10"], 11));
        assert!(accepts(&["stale-if-error=10"], 0));
        // On error either permission suffices.
        assert!(accepts(&["max-stale=10, stale-if-error=60"], 30));
        assert!(accepts(&["max-stale=60", "stale-if-error=10"], 30));
        assert!(!accepts(&["max-stale=5", "stale-if-error=10"], 11));
        // Repeated: the stricter; a value wins over none; malformed reads as 0.
        assert!(!accepts(&["max-stale=60, max-stale=10"], 30));
        assert!(!accepts(&["max-stale", "max-stale=10"], 30));
        assert!(!accepts(&["max-stale=10", "max-stale"], 30));
        assert!(!accepts(&["max-stale=soon"], 1));
        assert!(accepts(&["max-stale=soon"], 0));
        assert_eq!(
            req(&["stale-if-error=7, stale-if-error=3"]).stale_if_error,
            Some(3)
        );
    }

    #[test]
    fn a_response_that_forbids_reuse_is_told_apart_from_one_this_cache_cannot_keep() {
        let h = |pairs: &[(&str, &str)]| storable(&HeaderMap::from_strs(pairs), 1024);
        for cc in [
            "no-store",
            "private",
            "Private=\"x-a\"",
            "max-age=60, no-cache",
        ] {
            assert_eq!(
                h(&[("cache-control", cc)]),
                Err(NotStored::ForbidsReuse),
                "{cc}"
            );
        }
        // Forbidding wins over anything else wrong with the response.
        assert_eq!(
            h(&[
                ("cache-control", "private"),
                ("set-cookie", "a=b"),
                ("vary", "*")
            ]),
            Err(NotStored::ForbidsReuse)
        );
        for pairs in [
            &[("set-cookie", "a=b")][..],
            &[("content-encoding", "gzip")],
            &[("content-length", "2048")],
            &[("vary", "*")],
            &[("cache-control", "max-age=0, must-revalidate")],
            &[
                ("cache-control", "max-age=2, stale-if-error=1"),
                ("age", "5"),
            ],
        ] {
            assert_eq!(h(pairs), Err(NotStored::Unsuitable), "{pairs:?}");
        }
        // Announced at most `limit` bytes, with a content type of at most MAX_CONTENT_TYPE_LEN: kept.
        assert!(h(&[("content-length", "1024")]).is_ok());
        assert_eq!(h(&[("content-length", "1025")]), Err(NotStored::Unsuitable));
        let content_type = |len: usize| format!("text/plain; x={}", "a".repeat(len - 14));
        let s = h(&[("content-type", &content_type(MAX_CONTENT_TYPE_LEN))]).unwrap();
        assert_eq!(s.content_type.len(), MAX_CONTENT_TYPE_LEN);
        for len in [MAX_CONTENT_TYPE_LEN + 1, 4 * MAX_CONTENT_TYPE_LEN] {
            assert_eq!(
                h(&[("content-type", &content_type(len))]),
                Err(NotStored::Unsuitable),
                "{len}"
            );
        }
        let s = h(&[("cache-control", "max-age=60, s-maxage=30"), ("age", "4")]).unwrap();
        assert_eq!((s.lifetime_s, s.initial_age_s), (30, 4));
        assert_eq!(h(&[]).unwrap().lifetime_s, 0);
    }

    #[test]
    fn ages_take_the_largest_valid_value() {
        assert_eq!(age([&b"5"[..], b" 7 ", b"x"]), 7);
        assert_eq!(age([&b"-1"[..]]), 0);
        assert_eq!(age(std::iter::empty()), 0);
    }

    #[test]
    fn vary_names_are_lower_case_once_and_star_refuses() {
        let v = |lines: &[&str]| vary_names(lines.iter().map(|l| l.as_bytes()));
        assert_eq!(
            v(&[
                "Accept-Language, accept-encoding",
                "ACCEPT-language,, X-Tenant"
            ]),
            Some(vec![
                "accept-language".to_string(),
                "accept-encoding".into(),
                "x-tenant".into()
            ])
        );
        assert_eq!(v(&[]), Some(vec![]));
        assert_eq!(v(&["accept, *"]), None);
        assert_eq!(v(&["a b"]), None, "not a token");
        let long = "x".repeat(MAX_VARY_BYTES + 1);
        assert_eq!(v(&[&long]), None);
        // MAX_VARY_BYTES counts each name with one byte of separator: exactly at it is kept.
        let at_limit = "x".repeat(MAX_VARY_BYTES - 1);
        assert_eq!(v(&[&at_limit]), Some(vec![at_limit.clone()]));
        assert_eq!(v(&[&"x".repeat(MAX_VARY_BYTES)]), None);
        let half = |c: &str| c.repeat(MAX_VARY_BYTES / 2 - 1);
        assert_eq!(
            v(&[&format!("{}, {}", half("a"), half("b"))]).map(|n| n.len()),
            Some(2)
        );
        assert_eq!(v(&[&format!("{}, {}, c", half("a"), half("b"))]), None);
    }

    #[test]
    fn vary_values_normalise_whitespace_and_lines_only() {
        let names = vec!["accept-language".to_string(), "x-tenant".to_string()];
        let h = |pairs: &[(&str, &str)]| vary_hash(&names, &HeaderMap::from_strs(pairs));
        let base = h(&[
            ("accept-language", "fr"),
            ("accept-language", "de"),
            ("x-tenant", "a"),
        ]);
        assert_eq!(
            base,
            h(&[("accept-language", " fr ,\tde"), ("x-tenant", "a")])
        );
        assert_eq!(base, h(&[("x-tenant", "a"), ("accept-language", "fr,de")]));
        assert_ne!(base, h(&[("accept-language", "de, fr"), ("x-tenant", "a")]));
        assert_ne!(base, h(&[("accept-language", "FR, de"), ("x-tenant", "a")]));
        assert_ne!(base, h(&[("accept-language", "fr, de")]), "absent tenant");
        // Elements stay apart: `fr, de` is not `frde`.
        assert_ne!(base, h(&[("accept-language", "frde"), ("x-tenant", "a")]));
        assert_ne!(
            h(&[("x-tenant", "")]),
            h(&[]),
            "an empty value is not an absent one"
        );
        // The names are part of it: the same values under other names differ.
        let other = vec!["accept".to_string(), "x-tenant".to_string()];
        assert_ne!(
            vary_hash(
                &other,
                &HeaderMap::from_strs(&[("accept", "fr"), ("x-tenant", "a")])
            ),
            vary_hash(
                &names,
                &HeaderMap::from_strs(&[("accept-language", "fr"), ("x-tenant", "a")])
            )
        );
    }

    #[test]
    fn private_headers_exempt_key_headers() {
        let list: Vec<String> = ["authorization", "x-api-key"].map(String::from).to_vec();
        let req = HeaderMap::from_strs(&[("X-Api-Key", "alice")]);
        assert!(is_private(&req, &list, &[]));
        assert!(!is_private(&req, &list, &["x-api-key".to_string()]));
        assert!(!is_private(
            &HeaderMap::from_strs(&[("accept", "x")]),
            &list,
            &[]
        ));
    }
}
