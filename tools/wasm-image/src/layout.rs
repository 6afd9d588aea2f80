//! An image on disk as an OCI image layout (opencontainers/image-spec `image-layout.md`): `oci-layout`,
//! `index.json` naming the one manifest, and every blob under `blobs/sha256/`. `skopeo copy
//! oci:dist/images/<name> docker://...`, `crane push` and `oras` read it as well as this tool.

use crate::image::{Blob, Image};
use serde_json::json;
use std::fs;
use std::path::Path;

const INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// Writes `image` as a layout at `dir`, replacing what was there.
pub fn write(dir: &Path, image: &Image) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    if dir.exists() {
        fs::remove_dir_all(dir).map_err(err)?;
    }
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).map_err(err)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(err)?;
    let digest = image.digest();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [{
            "mediaType": image.manifest_media_type,
            "digest": digest,
            "size": image.manifest.len(),
        }],
    });
    let index = serde_json::to_vec(&index).map_err(|e| e.to_string())?;
    fs::write(dir.join("index.json"), index).map_err(err)?;
    fs::write(blobs.join(hex_of(&digest)), &image.manifest).map_err(err)?;
    for blob in image.blobs() {
        fs::write(blobs.join(hex_of(&blob.digest())), &blob.data).map_err(err)?;
    }
    Ok(())
}

/// Reads the layout at `dir` back: the manifest `index.json` names and the blobs it names, each checked
/// against its digest.
pub fn read(dir: &Path) -> Result<Image, String> {
    let read_json = |path: &Path| -> Result<serde_json::Value, String> {
        let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
    };
    let index = read_json(&dir.join("index.json"))?;
    let entry = match index.get("manifests").and_then(|m| m.as_array()) {
        Some(list) if list.len() == 1 => list.first(),
        _ => None,
    }
    .ok_or_else(|| format!("{}: index.json must name one manifest", dir.display()))?;
    let manifest_media_type = media_type(entry.get("mediaType").and_then(|m| m.as_str()))?;
    let manifest = read_blob(dir, str_field(entry, "digest")?)?;
    let value: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| format!("manifest: {e}"))?;
    let load = |desc: &serde_json::Value| -> Result<Blob, String> {
        Ok(Blob {
            media_type: media_type(desc.get("mediaType").and_then(|m| m.as_str()))?,
            data: read_blob(dir, str_field(desc, "digest")?)?,
        })
    };
    let config = load(value.get("config").ok_or("manifest has no config")?)?;
    let layers = value
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or("manifest has no layers")?
        .iter()
        .map(load)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Image {
        manifest_media_type,
        manifest,
        config,
        layers,
    })
}

fn str_field<'a>(value: &'a serde_json::Value, name: &str) -> Result<&'a str, String> {
    value
        .get(name)
        .and_then(|v| v.as_str())
        .ok_or_else(|| format!("descriptor without `{name}`"))
}

/// The media types this tool writes; anything else is not one of its images.
fn media_type(found: Option<&str>) -> Result<&'static str, String> {
    use crate::image::*;
    const KNOWN: [&str; 8] = [
        DOCKER_MANIFEST,
        DOCKER_CONFIG,
        DOCKER_LAYER,
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER,
        WASM_CONFIG,
        WASM_LAYER,
    ];
    let found = found.unwrap_or("");
    KNOWN
        .into_iter()
        .find(|k| *k == found)
        .ok_or_else(|| format!("unexpected media type `{found}`"))
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

fn read_blob(dir: &Path, digest: &str) -> Result<Vec<u8>, String> {
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| format!("unsupported digest `{digest}`"))?;
    let path = dir.join("blobs/sha256").join(hex);
    let data = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    if crate::image::sha256_digest(&data) != digest {
        return Err(format!(
            "{}: content does not match its digest",
            path.display()
        ));
    }
    Ok(data)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::{build, Format};

    #[test]
    fn a_written_layout_reads_back_as_the_same_image() {
        let module = b"\0asm\x01\0\0\0module".to_vec();
        for format in [Format::Compat, Format::CompatOci, Format::Oci] {
            let dir = std::env::temp_dir().join(format!(
                "wasm-image-layout-{}-{format:?}",
                std::process::id()
            ));
            let image = build(&module, format).unwrap();
            write(&dir, &image).unwrap();
            let back = read(&dir).unwrap();
            assert_eq!(back.digest(), image.digest());
            assert_eq!(back.manifest_media_type, image.manifest_media_type);
            assert_eq!(back.layers.len(), image.layers.len());
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
