//! Push and pull through the registry HTTP API (OCI distribution spec) with the `oci-client` crate.
//! Plain HTTP only for a registry on this machine (`localhost`, `127.0.0.1`, `[::1]`), as Docker
//! treats those as insecure registries by default; HTTPS everywhere else.

use crate::image::{Image, DOCKER_MANIFEST, OCI_MANIFEST};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

/// `REGISTRY/NAME:TAG` parsed, with `REGISTRY` a host with an optional path (`host:5000/mesh-filters`).
pub fn reference(registry: &str, name: &str, tag: &str) -> Result<Reference, String> {
    let text = format!("{}/{name}:{tag}", registry.trim_end_matches('/'));
    text.parse::<Reference>()
        .map_err(|e| format!("`{text}` is not an image reference: {e}"))
}

pub fn is_loopback(host_port: &str) -> bool {
    let host = match host_port.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(rest),
        None => host_port.split(':').next().unwrap_or(host_port),
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub struct Registry {
    client: Client,
    auth: RegistryAuth,
}

impl Registry {
    /// A client for the registry `reference` names, with the Docker config's credentials for it.
    pub fn for_reference(reference: &Reference) -> Result<Registry, String> {
        let host = reference.resolve_registry().to_string();
        let protocol = if is_loopback(&host) {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = Client::try_from(ClientConfig {
            protocol,
            // A manifest list is not what this tool pushes or Istio reads.
            platform_resolver: None,
            ..Default::default()
        })
        .map_err(|e| format!("registry client: {e}"))?;
        let auth = match crate::auth::credentials(&host)? {
            Some((user, pass)) => RegistryAuth::Basic(user, pass),
            None => RegistryAuth::Anonymous,
        };
        Ok(Registry { client, auth })
    }

    /// Uploads every blob the registry lacks, then the manifest bytes as they are (so the registry's
    /// digest is the local one). Returns the digest the registry reports.
    pub async fn push(&self, reference: &Reference, image: &Image) -> Result<String, String> {
        let err = |what: &str, e: oci_client::errors::OciDistributionError| {
            format!("{reference}: {what}: {e}")
        };
        self.client
            .auth(reference, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| err("authentication", e))?;
        for blob in image.blobs() {
            let digest = blob.digest();
            let present = self
                .client
                .blob_exists(reference, &digest)
                .await
                .map_err(|e| err("blob lookup", e))?;
            if !present {
                self.client
                    .push_blob(reference, blob.data.clone(), &digest)
                    .await
                    .map_err(|e| err("blob upload", e))?;
            }
        }
        let content_type = image
            .manifest_media_type
            .parse()
            .map_err(|_| "manifest media type is not a header value".to_string())?;
        self.client
            .push_manifest_raw(reference, image.manifest.clone(), content_type)
            .await
            .map_err(|e| err("manifest upload", e))?;
        let remote = self.digest(reference).await?;
        if remote != image.digest() {
            return Err(format!(
                "{reference}: the registry reports {remote}, not the pushed {}",
                image.digest()
            ));
        }
        Ok(remote)
    }

    /// The digest of the manifest `reference` names now (a HEAD request, as Istio's fetcher's first
    /// request).
    pub async fn digest(&self, reference: &Reference) -> Result<String, String> {
        self.client
            .fetch_manifest_digest(reference, &self.auth)
            .await
            .map_err(|e| format!("{reference}: manifest digest: {e}"))
    }

    /// The manifest bytes and their digest (checked by the client), asking for the two manifest types
    /// Istio's fetcher reads.
    pub async fn manifest(&self, reference: &Reference) -> Result<(Vec<u8>, String), String> {
        let (body, digest) = self
            .client
            .pull_manifest_raw(reference, &self.auth, &[OCI_MANIFEST, DOCKER_MANIFEST])
            .await
            .map_err(|e| format!("{reference}: manifest: {e}"))?;
        Ok((body.to_vec(), digest))
    }

    /// One blob's bytes (checked against the digest by the client).
    pub async fn blob(&self, reference: &Reference, digest: &str) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        self.client
            .pull_blob(reference, digest, &mut out)
            .await
            .map_err(|e| format!("{reference}: blob {digest}: {e}"))?;
        Ok(out)
    }

    /// The module `reference` holds, extracted as Istio's fetcher does, and the image digest.
    pub async fn pull_module(&self, reference: &Reference) -> Result<(Vec<u8>, String), String> {
        let (manifest, digest) = self.manifest(reference).await?;
        let value: serde_json::Value =
            serde_json::from_slice(&manifest).map_err(|e| format!("manifest: {e}"))?;
        // Fetch what the manifest names first; extract_module then reads from memory.
        let mut blobs = Vec::new();
        for desc in value
            .get("layers")
            .and_then(|l| l.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(d) = desc.get("digest").and_then(|d| d.as_str()) {
                blobs.push((d.to_string(), self.blob(reference, d).await?));
            }
        }
        let module = crate::image::extract_module(&manifest, &|d: &str| {
            blobs
                .iter()
                .find(|(digest, _)| digest == d)
                .map(|(_, data)| data.clone())
                .ok_or_else(|| format!("blob {d} not named by the manifest"))
        })?;
        Ok((module, digest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machine_gets_plain_http() {
        for host in [
            "localhost:5000",
            "127.0.0.1:5000",
            "127.0.0.2",
            "[::1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "registry.example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
