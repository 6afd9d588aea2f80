//! Rewrites a module's export section (id 7) without the named exports; every other byte is copied.

/// Only stream callbacks whose absence Envoy treats as "continue" or "done" may be dropped: never
/// `proxy_on_delete` (the SDK frees the stream's context there), the context creation, the memory
/// allocator or the root callbacks.
pub const DROPPABLE: &[&str] = &[
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_body",
    "proxy_on_response_trailers",
    "proxy_on_log",
    "proxy_on_done",
];

const EXPORT_SECTION: u8 = 7;

pub fn drop_exports(module: &[u8], names: &[&str]) -> Result<Vec<u8>, String> {
    if let Some(name) = names.iter().find(|n| !DROPPABLE.contains(n)) {
        return Err(format!(
            "{name} may not be dropped (droppable: {})",
            DROPPABLE.join(", ")
        ));
    }
    let (header, mut rest) = module
        .split_at_checked(8)
        .filter(|(h, _)| h.starts_with(b"\0asm"))
        .ok_or("not a Wasm module")?;
    let mut out = header.to_vec();
    let mut dropped = Vec::new();
    while let Some((&id, after_id)) = rest.split_first() {
        let mut r = Reader(after_id);
        let size = r.leb()? as usize;
        let (payload, next) = r.0.split_at_checked(size).ok_or("truncated section")?;
        if id == EXPORT_SECTION {
            let section = export_section(payload, names, &mut dropped)?;
            out.push(id);
            write_leb(&mut out, section.len() as u32);
            out.extend_from_slice(&section);
        } else {
            out.push(id);
            write_leb(&mut out, size as u32);
            out.extend_from_slice(payload);
        }
        rest = next;
    }
    // A name that is not exported is a stale list: say so rather than build something unexpected.
    if let Some(missing) = names.iter().find(|n| !dropped.contains(*n)) {
        return Err(format!("{missing} is not exported by this module"));
    }
    Ok(out)
}

fn export_section<'a>(
    payload: &'a [u8],
    names: &[&str],
    dropped: &mut Vec<&'a str>,
) -> Result<Vec<u8>, String> {
    let mut r = Reader(payload);
    let count = r.leb()?;
    let mut kept = Vec::new();
    let mut kept_count = 0u32;
    for _ in 0..count {
        let start = r.0;
        let len = r.leb()? as usize;
        let name = r.take(len)?;
        r.take(1)?; // kind
        r.leb()?; // index
        let entry = start
            .get(..start.len() - r.0.len())
            .ok_or("bad export entry")?;
        let name = std::str::from_utf8(name).map_err(|_| "export name is not UTF-8")?;
        if names.contains(&name) {
            dropped.push(name);
        } else {
            kept.extend_from_slice(entry);
            kept_count += 1;
        }
    }
    if !r.0.is_empty() {
        return Err("trailing bytes in the export section".into());
    }
    let mut section = Vec::with_capacity(kept.len() + 5);
    write_leb(&mut section, kept_count);
    section.extend_from_slice(&kept);
    Ok(section)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let (head, rest) = self.0.split_at_checked(n).ok_or("truncated module")?;
        self.0 = rest;
        Ok(head)
    }

    /// An unsigned LEB128 of at most 32 bits.
    fn leb(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let [byte] = self.take(1)? else {
                return Err("truncated module".into());
            };
            value |= u32::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("LEB128 number too long".into())
    }
}

fn write_leb(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    /// A module with one function type, a function per name, the exports of the functions listed in
    /// `exported` (by index) under their names, and a custom section at the end.
    fn module_exporting(names: &[&str], exported: &[usize]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        // type section: one type () -> ()
        m.extend_from_slice(&[1, 4, 1, 0x60, 0, 0]);
        // function section: every function of type 0
        let n = names.len() as u8;
        m.extend_from_slice(&[3, n + 1, n]);
        m.extend(std::iter::repeat_n(0, names.len()));
        let mut exports = vec![exported.len() as u8];
        for &i in exported {
            exports.push(names[i].len() as u8);
            exports.extend_from_slice(names[i].as_bytes());
            exports.extend_from_slice(&[0, i as u8]);
        }
        m.push(EXPORT_SECTION);
        write_leb(&mut m, exports.len() as u32);
        m.extend_from_slice(&exports);
        // code section: empty bodies
        let mut code = vec![n];
        for _ in names {
            code.extend_from_slice(&[2, 0, 0x0b]);
        }
        m.push(10);
        write_leb(&mut m, code.len() as u32);
        m.extend_from_slice(&code);
        m.extend_from_slice(&[0, 5, 4, b'n', b'o', b't', b'e']);
        m
    }

    fn module(names: &[&str]) -> Vec<u8> {
        module_exporting(names, &(0..names.len()).collect::<Vec<_>>())
    }

    #[test]
    fn drops_only_the_named_exports_and_copies_the_rest() {
        let all = [
            "proxy_on_request_headers",
            "proxy_on_response_body",
            "proxy_on_done",
            "proxy_on_delete",
        ];
        let trimmed =
            drop_exports(&module(&all), &["proxy_on_response_body", "proxy_on_done"]).unwrap();
        assert_eq!(trimmed, module_exporting(&all, &[0, 3]));
    }

    #[test]
    fn refuses_names_it_may_not_drop_or_cannot_find() {
        let m = module(&["proxy_on_delete", "proxy_on_log"]);
        assert!(drop_exports(&m, &["proxy_on_delete"])
            .unwrap_err()
            .contains("may not be dropped"));
        assert!(drop_exports(&m, &["proxy_on_done"])
            .unwrap_err()
            .contains("not exported"));
        assert_eq!(drop_exports(&m, &[]).unwrap(), m);
    }

    #[test]
    fn rejects_what_is_not_a_module_without_panicking() {
        let m = module(&["proxy_on_log"]);
        for cut in 0..m.len() {
            let _ = drop_exports(&m[..cut], &["proxy_on_log"]);
        }
        assert!(drop_exports(b"not wasm at all", &[]).is_err());
        let mut long_leb = m[..8].to_vec();
        long_leb.extend_from_slice(&[7, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        assert!(drop_exports(&long_leb, &[]).is_err());
    }

    #[test]
    fn leb_round_trips() {
        for v in [0u32, 1, 127, 128, 300, 16_384, u32::MAX] {
            let mut b = Vec::new();
            write_leb(&mut b, v);
            assert_eq!(Reader(&b).leb().unwrap(), v);
        }
    }
}
