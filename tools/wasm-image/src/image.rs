//! The image of one Wasm module, in a form Istio's fetcher takes (istio/istio `pkg/wasm/imagefetcher.go`),
//! built byte for byte the same from the same module: the digest names the module.
//!
//! The fetcher, given a manifest, tries in this order:
//! - manifest `mediaType` Docker v2 schema 2: the last layer must be
//!   `application/vnd.docker.image.rootfs.diff.tar.gzip`, a gzip tar holding a file whose base name is
//!   `plugin.wasm` (`extractDockerImage`);
//! - otherwise one layer of `application/vnd.oci.image.layer.v1.tar+gzip`, same content
//!   (`extractOCIStandardImage`);
//! - otherwise exactly two layers, one of `application/vnd.module.wasm.content.layer.v1+wasm` holding the
//!   raw module (`extractOCIArtifactImage`, the solo-io "oci" variant: the other layer is the runtime
//!   configuration JSON).
//!
//! Every variant here has one layer (or the two of the "oci" variant), which older Istio versions insist
//! on ("number of layers must be 1").

use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::Write;

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";
pub const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";

/// The file the compat variants' layer holds (`wasmPluginFileName` in Istio's fetcher).
pub const PLUGIN_FILE: &str = "plugin.wasm";

/// Which of the three forms Istio's fetcher reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Docker's manifest v2 schema 2 with one gzip tar layer: what `docker build` of the Dockerfile
    /// pushes, and what any registry stores.
    Compat,
    /// The same layer under OCI media types, annotated `module.wasm.image/variant: compat` as the
    /// solo-io compat spec asks.
    CompatOci,
    /// The solo-io "oci" variant: the raw module as a `...wasm.content.layer.v1+wasm` layer beside its
    /// runtime configuration.
    Oci,
}

impl Format {
    pub fn parse(name: &str) -> Result<Format, String> {
        match name {
            "compat" | "docker" => Ok(Format::Compat),
            "compat-oci" => Ok(Format::CompatOci),
            "oci" => Ok(Format::Oci),
            other => Err(format!(
                "unknown image format `{other}`: one of compat, compat-oci, oci"
            )),
        }
    }
}

/// A content-addressed blob with its descriptor fields.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: &'static str,
    pub data: Vec<u8>,
}

impl Blob {
    pub fn digest(&self) -> String {
        sha256_digest(&self.data)
    }
}

/// A built image: the manifest bytes (what the registry stores and digests) and every blob it names.
#[derive(Clone, Debug)]
pub struct Image {
    pub manifest_media_type: &'static str,
    pub manifest: Vec<u8>,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

impl Image {
    /// `sha256:<hex>` of the manifest: the image digest, which Istio compares with a WasmPlugin's
    /// `sha256` for `oci://` URLs.
    pub fn digest(&self) -> String {
        sha256_digest(&self.manifest)
    }

    /// Config and layers, each blob once (the "oci" variant's config is also a layer).
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut out: Vec<&Blob> = vec![&self.config];
        for layer in &self.layers {
            if !out.iter().any(|b| b.data == layer.data) {
                out.push(layer);
            }
        }
        out
    }
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// Field order is the serialized order: fixed, so the JSON (and its digest) is too.
#[derive(Serialize)]
struct Descriptor<'a> {
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    digest: String,
    size: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<Annotations<'a>>,
}

#[derive(Serialize)]
struct Annotations<'a> {
    #[serde(rename = "org.opencontainers.image.title")]
    title: &'a str,
}

#[derive(Serialize)]
struct Manifest<'a> {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    annotations: Option<VariantAnnotation<'a>>,
}

#[derive(Serialize)]
struct VariantAnnotation<'a> {
    #[serde(rename = "module.wasm.image/variant")]
    variant: &'a str,
}

fn descriptor<'a>(blob: &'a Blob, title: Option<&'a str>) -> Descriptor<'a> {
    Descriptor {
        media_type: blob.media_type,
        digest: blob.digest(),
        size: blob.data.len(),
        annotations: title.map(|title| Annotations { title }),
    }
}

/// The image of `module` in `format`. Pure: the same module gives the same bytes.
pub fn build(module: &[u8], format: Format) -> Result<Image, String> {
    if module.get(..4) != Some(b"\0asm".as_slice()) {
        // Istio refuses it after the download (`isValidWasmBinary` in pkg/wasm/cache.go).
        return Err("not a Wasm module (no \\0asm magic number)".into());
    }
    match format {
        Format::Compat | Format::CompatOci => {
            let tar = plugin_tar(module)?;
            let layer_data = gzip(&tar)?;
            let (manifest_mt, config_mt, layer_mt, variant) = if format == Format::Compat {
                (DOCKER_MANIFEST, DOCKER_CONFIG, DOCKER_LAYER, None)
            } else {
                (
                    OCI_MANIFEST,
                    OCI_CONFIG,
                    OCI_LAYER,
                    Some(VariantAnnotation { variant: "compat" }),
                )
            };
            let config = Blob {
                media_type: config_mt,
                data: image_config(&sha256_digest(&tar))?,
            };
            let layer = Blob {
                media_type: layer_mt,
                data: layer_data,
            };
            let manifest = Manifest {
                schema_version: 2,
                media_type: manifest_mt,
                config: descriptor(&config, None),
                layers: vec![descriptor(&layer, None)],
                annotations: variant,
            };
            Ok(Image {
                manifest_media_type: manifest_mt,
                manifest: to_json(&manifest)?,
                config,
                layers: vec![layer],
            })
        }
        Format::Oci => {
            let config = Blob {
                media_type: WASM_CONFIG,
                data: runtime_config()?,
            };
            let wasm = Blob {
                media_type: WASM_LAYER,
                data: module.to_vec(),
            };
            // The runtime configuration is both the manifest's config and the first of the two layers
            // the fetcher counts, as in the solo-io spec's example.
            let manifest = Manifest {
                schema_version: 2,
                media_type: OCI_MANIFEST,
                config: descriptor(&config, None),
                layers: vec![
                    descriptor(&config, Some("runtime-config.json")),
                    descriptor(&wasm, Some(PLUGIN_FILE)),
                ],
                annotations: None,
            };
            Ok(Image {
                manifest_media_type: OCI_MANIFEST,
                manifest: to_json(&manifest)?,
                layers: vec![config.clone(), wasm],
                config,
            })
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    serde_json::to_vec(value).map_err(|e| format!("serializing: {e}"))
}

/// A tar with one entry, `plugin.wasm`, whose header holds nothing of the machine or the moment:
/// mtime 0, uid/gid 0, no owner names, mode 0644.
fn plugin_tar(module: &[u8]) -> Result<Vec<u8>, String> {
    let mut header = tar::Header::new_ustar();
    header
        .set_path(PLUGIN_FILE)
        .map_err(|e| format!("tar: {e}"))?;
    header.set_size(module.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder
        .append(&header, module)
        .map_err(|e| format!("tar: {e}"))?;
    builder.into_inner().map_err(|e| format!("tar: {e}"))
}

/// gzip with no file name and mtime 0 in its header, at a fixed level (flate2's Rust backend, whose
/// version Cargo.lock pins).
fn gzip(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut encoder = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).map_err(|e| format!("gzip: {e}"))?;
    encoder.finish().map_err(|e| format!("gzip: {e}"))
}

/// The image configuration of the compat variants. `rootfs.diff_ids` names the uncompressed layer, as
/// Docker and the OCI image spec require; the platform is what `docker build` records on the usual
/// amd64 build host (the module itself runs anywhere; Istio's fetcher never reads this).
fn image_config(diff_id: &str) -> Result<Vec<u8>, String> {
    #[derive(Serialize)]
    struct RootFs<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        diff_ids: Vec<&'a str>,
    }
    #[derive(Serialize)]
    struct Config<'a> {
        architecture: &'a str,
        os: &'a str,
        config: serde_json::Map<String, serde_json::Value>,
        rootfs: RootFs<'a>,
    }
    to_json(&Config {
        architecture: "amd64",
        os: "linux",
        config: serde_json::Map::new(),
        rootfs: RootFs {
            kind: "layers",
            diff_ids: vec![diff_id],
        },
    })
}

/// The "oci" variant's runtime configuration (solo-io wasm spec: `type`, `abi_version`, `config`). The
/// filters are built on proxy-wasm ABI 0.2.1.
fn runtime_config() -> Result<Vec<u8>, String> {
    to_json(&serde_json::json!({
        "type": "envoy_proxy",
        "abi_version": "v0.2.1",
        "config": {}
    }))
}

/// The module an image carries, found as Istio's fetcher finds it (see the module doc), given the
/// manifest and a way to read a blob by digest. Also checks each blob against its descriptor.
pub fn extract_module(
    manifest: &[u8],
    blob: &dyn Fn(&str) -> Result<Vec<u8>, String>,
) -> Result<Vec<u8>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let media_type = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or("");
    let layers: Vec<(String, String)> = value
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or("manifest has no layers")?
        .iter()
        .map(|l| {
            (
                l.get("mediaType")
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_string(),
                l.get("digest")
                    .and_then(|m| m.as_str())
                    .unwrap_or("")
                    .to_string(),
            )
        })
        .collect();
    let fetch = |digest: &str| -> Result<Vec<u8>, String> {
        let data = blob(digest)?;
        if sha256_digest(&data) != digest {
            return Err(format!("blob {digest} does not match its digest"));
        }
        Ok(data)
    };
    if media_type == DOCKER_MANIFEST {
        let (mt, digest) = layers.last().ok_or("number of layers must be 1")?;
        if mt != DOCKER_LAYER {
            return Err(format!("invalid media type {mt} (expect {DOCKER_LAYER})"));
        }
        return plugin_from_tar_gz(&fetch(digest)?);
    }
    let compat = match layers.as_slice() {
        [(mt, digest)] if mt == OCI_LAYER => Some(plugin_from_tar_gz(&fetch(digest)?)),
        _ => None,
    };
    if let Some(found) = compat {
        return found;
    }
    if layers.len() != 2 {
        return Err(format!(
            "not a compat image, and an oci variant needs 2 layers, not {}",
            layers.len()
        ));
    }
    let (_, digest) = layers
        .iter()
        .find(|(mt, _)| mt == WASM_LAYER)
        .ok_or_else(|| format!("could not find the layer of type {WASM_LAYER}"))?;
    fetch(digest)
}

/// `plugin.wasm` (by base name, as `extractWasmPluginBinary` matches it) out of a gzip tar.
pub fn plugin_from_tar_gz(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(data));
    for entry in archive.entries().map_err(|e| format!("tar.gz: {e}"))? {
        let mut entry = entry.map_err(|e| format!("tar.gz: {e}"))?;
        let path = entry.path().map_err(|e| format!("tar.gz: {e}"))?;
        if path.file_name().and_then(|n| n.to_str()) == Some(PLUGIN_FILE) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut out).map_err(|e| format!("tar.gz: {e}"))?;
            return Ok(out);
        }
    }
    Err(format!("{PLUGIN_FILE} not found in the archive"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn module() -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend(std::iter::repeat_n(7u8, 5000));
        m
    }

    fn round_trip(image: &Image) -> Result<Vec<u8>, String> {
        let blobs = image.blobs();
        extract_module(&image.manifest, &|d: &str| {
            blobs
                .iter()
                .find(|b| b.digest() == d)
                .map(|b| b.data.clone())
                .ok_or_else(|| format!("no blob {d}"))
        })
    }

    #[test]
    fn every_format_gives_back_the_module_and_the_same_digest_twice() {
        for format in [Format::Compat, Format::CompatOci, Format::Oci] {
            let a = build(&module(), format).unwrap();
            let b = build(&module(), format).unwrap();
            assert_eq!(a.digest(), b.digest(), "{format:?}");
            assert_eq!(round_trip(&a).unwrap(), module(), "{format:?}");
        }
    }

    #[test]
    fn a_different_module_is_a_different_image() {
        let mut other = module();
        other.push(1);
        for format in [Format::Compat, Format::CompatOci, Format::Oci] {
            assert_ne!(
                build(&module(), format).unwrap().digest(),
                build(&other, format).unwrap().digest()
            );
        }
    }

    #[test]
    fn the_layer_is_one_plain_entry_with_no_time_or_owner() {
        let image = build(&module(), Format::Compat).unwrap();
        let gz = &image.layers[0].data;
        // gzip header: magic, method, flags 0 (no name), mtime 0.
        assert_eq!(&gz[..8], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]);
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(gz.as_slice()));
        let entries: Vec<_> = archive.entries().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(entries.len(), 1);
        let h = entries[0].header();
        assert_eq!(h.path().unwrap().to_str(), Some("plugin.wasm"));
        assert_eq!(
            (h.mtime().unwrap(), h.uid().unwrap(), h.gid().unwrap()),
            (0, 0, 0)
        );
        assert_eq!(h.mode().unwrap(), 0o644);
    }

    #[test]
    fn not_wasm_is_refused() {
        assert!(build(b"hello world", Format::Compat).is_err());
    }
}
