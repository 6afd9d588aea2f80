//! The release overlay: `istio/base` plus, for each WasmPlugin, where its module comes from and the
//! checksum Istio verifies it against. What `sha256` means depends on the URL (istio/istio
//! `pkg/wasm/cache.go`, `Get`):
//! - `oci://`: the fetcher compares it with the image's manifest digest (`img.Digest().Hex` in
//!   `imagefetcher.go`), so it is the pushed image digest, not the module's hash;
//! - `http(s)://`: it is the SHA-256 of the downloaded module file.
//!
//! The URL keeps the tag, which says which release it is; the digest makes a moved tag fail the pull
//! ("module downloaded from ... has checksum ..., which does not match") instead of loading other code.

/// Where one WasmPlugin's module comes from.
pub struct Source {
    /// The WasmPlugin's `metadata.name` in `istio/base`.
    pub plugin: String,
    pub url: String,
    /// 64 lower-case hex digits.
    pub sha256: String,
}

/// The whole `kustomization.yaml`, one strategic-merge patch per plugin (JSON merge for a CRD: only
/// `spec.url` and `spec.sha256` change).
pub fn render(sources: &[Source], how: &str) -> String {
    let mut out = String::new();
    out.push_str(
        "# Written by tools/wasm-image (`make pin`); rewrite it with that command rather than by hand.\n",
    );
    out.push_str(&format!("# {how}\n"));
    out.push_str(
        "# For oci:// URLs `sha256` is the image's manifest digest, which Istio's fetcher checks after the\n\
         # pull (pkg/wasm/imagefetcher.go); for http(s):// URLs it is the module file's SHA-256.\n",
    );
    out.push_str("apiVersion: kustomize.config.k8s.io/v1beta1\n");
    out.push_str("kind: Kustomization\n");
    out.push_str("resources:\n  - ../../base\n");
    out.push_str("patches:\n");
    for s in sources {
        out.push_str("  - patch: |-\n");
        out.push_str("      apiVersion: extensions.istio.io/v1alpha1\n");
        out.push_str("      kind: WasmPlugin\n");
        out.push_str(&format!("      metadata:\n        name: {}\n", s.plugin));
        out.push_str(&format!("      spec:\n        url: {}\n", s.url));
        out.push_str(&format!("        sha256: {}\n", s.sha256));
    }
    out
}

/// Checks what goes into the file: plain names and URLs (no YAML quoting needed) and the `sha256`
/// shape the WasmPlugin schema demands (`^[a-f0-9]{64}$`).
pub fn check(source: &Source) -> Result<(), String> {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._:/@[]%".contains(c))
    };
    if !plain(&source.plugin) || !plain(&source.url) {
        return Err(format!(
            "`{}` / `{}`: unexpected characters",
            source.plugin, source.url
        ));
    }
    if source.sha256.len() != 64
        || !source
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!("`{}` is not a sha256 hex digest", source.sha256));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_plugin_gets_url_and_sha256() {
        let s = Source {
            plugin: "fallback".into(),
            url: "oci://127.0.0.1:5000/fallback:0.1.0".into(),
            sha256: "ab".repeat(32),
        };
        assert!(check(&s).is_ok());
        let text = render(&[s], "test");
        assert!(text.contains("        name: fallback\n"));
        assert!(text.contains("        url: oci://127.0.0.1:5000/fallback:0.1.0\n"));
        assert!(text.contains(&format!("        sha256: {}\n", "ab".repeat(32))));
    }

    #[test]
    fn a_bad_digest_or_url_is_refused() {
        let bad = Source {
            plugin: "x".into(),
            url: "oci://r/x:1".into(),
            sha256: "AB".repeat(32),
        };
        assert!(check(&bad).is_err());
        let bad = Source {
            plugin: "x".into(),
            url: "oci://r/x:1\nkind: Secret".into(),
            sha256: "ab".repeat(32),
        };
        assert!(check(&bad).is_err());
    }
}
