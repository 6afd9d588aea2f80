//! String helpers that keep core's panic and `{:?}` paths out of the modules. A `&str` pattern
//! (`str::find`, `contains`, `split`, `replace`) runs core's two-way searcher, whose char-boundary
//! panic formats a `char` with `{:?}` and so links core's Unicode tables (about 12 KB); `[T]::join` is
//! about 1 KB per element type. Byte searches on the short texts of a configuration cost nothing
//! noticeable.

/// The byte offset of the first `needle` in `haystack`. A match of a whole `&str` in a `&str` starts
/// and ends on char boundaries, so the offset is one `str::split_at_checked` accepts.
pub fn find(haystack: &str, needle: &str) -> Option<usize> {
    let needle = needle.as_bytes();
    if needle.is_empty() {
        return Some(0);
    }
    haystack
        .as_bytes()
        .windows(needle.len())
        .position(|w| w == needle)
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &str, needle: &str) -> bool {
    find(haystack, needle).is_some()
}

/// `parts` joined by `separator`, as `[S]::join` gives it.
pub fn join<S: AsRef<str>>(parts: &[S], separator: &str) -> String {
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push_str(separator);
        }
        out.push_str(part.as_ref());
    }
    out
}

/// `text` onto `out` with the backslash escapes JSON and Rust share (`\"`, `\\`, `\n`, `\r`, `\t`);
/// any other char goes to `other`, which writes its escape and says so, or leaves it to be copied:
/// the one loop of `config::quoted` (log lines) and the fallback's JSON escaping.
pub fn push_escaped(out: &mut String, text: &str, other: impl Fn(&mut String, char) -> bool) {
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if other(out, c) => {}
            c => out.push(c),
        }
    }
}

/// `value` in decimal onto `out`, as `{}` writes it, without `core::fmt`'s machinery (shared-data keys
/// are built on every request).
pub fn push_decimal(out: &mut String, mut value: u64) {
    let mut digits = [b'0'; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (value % 10) as u8;
        }
        value /= 10;
        if value == 0 || start == 0 {
            break;
        }
    }
    out.push_str(std::str::from_utf8(digits.get(start..).unwrap_or_default()).unwrap_or_default());
}

/// Bytes for a log line: exact below 1 KiB, else one decimal in the largest binary unit (rounded half
/// to even, as `{:.1}` would; integer arithmetic, so the modules carry no float formatting).
pub fn human(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            // bytes * 10 / size in u64 (u128 division and formatting cost a module about 2.5 KB):
            // the whole units times ten fit, as size is at least 1024, and so does the remainder's.
            let (whole, part) = (bytes / size, bytes % size);
            let (mut tenths, rest) = (whole * 10 + part * 10 / size, part * 10 % size);
            if rest * 2 > size || (rest * 2 == size && tenths % 2 == 1) {
                tenths += 1;
            }
            return format!("{}.{} {unit}", tenths / 10, tenths % 10);
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn push_decimal_is_what_display_writes() {
        for v in [0u64, 7, 10, 99, 100, 4711, u64::from(u32::MAX), u64::MAX] {
            let mut s = String::from("k/");
            push_decimal(&mut s, v);
            assert_eq!(s, format!("k/{v}"));
        }
    }

    #[test]
    fn find_is_str_find() {
        for (h, n) in [
            ("a {{x}} b", "{{"),
            ("a {{x}} b", "}}"),
            ("no braces", "{{"),
            ("", "{{"),
            ("{", "{{"),
            ("é{{é}}", "}}"),
            ("text/html", "html"),
            ("abc", ""),
            ("", ""),
        ] {
            assert_eq!(find(h, n), h.find(n), "{h} / {n}");
            assert_eq!(contains(h, n), h.contains(n), "{h} / {n}");
        }
    }

    #[test]
    fn join_is_slice_join() {
        let parts = ["a", "", "c"];
        assert_eq!(join(&parts, ", "), parts.join(", "));
        let owned: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
        assert_eq!(join(&owned, ","), owned.join(","));
        assert_eq!(join::<&str>(&[], ","), "");
        assert_eq!(join(&["x"], ","), "x");
    }
}
