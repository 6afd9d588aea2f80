//! Registry credentials from the Docker client's config file, where `docker login` writes them:
//! `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`, section `auths`, keyed by registry host
//! (`host:port`, or a URL such as `https://index.docker.io/v1/`), each with `auth` = base64 of
//! `user:password` (or `username` and `password`). Credential helpers (`credsStore`, `credHelpers`) are
//! programs this tool does not run: it says so and goes on anonymously.

use base64::Engine;
use std::path::PathBuf;

/// User and password for `registry` (`host[:port]`), or `None` for anonymous access.
pub fn credentials(registry: &str) -> Result<Option<(String, String)>, String> {
    let Some(path) = config_path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let found = config
        .get("auths")
        .and_then(|a| a.as_object())
        .and_then(|auths| {
            auths
                .iter()
                .find(|(key, _)| host_of(key) == registry)
                .map(|(_, entry)| entry)
        });
    match found {
        Some(entry) => decode(entry)
            .map(Some)
            .map_err(|e| format!("{}: auths.{registry}: {e}", path.display())),
        None => {
            if config.get("credsStore").is_some() || config.get("credHelpers").is_some() {
                eprintln!(
                    "wasm-image: {} uses a credential helper, which this tool does not run; \
                     pulling/pushing {registry} anonymously",
                    path.display()
                );
            }
            Ok(None)
        }
    }
}

fn config_path() -> Option<PathBuf> {
    match std::env::var_os("DOCKER_CONFIG") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir).join("config.json")),
        _ => std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json")),
    }
}

/// The registry host a key of `auths` names: `https://host:port/v1/` and `host:port` both give
/// `host:port`.
fn host_of(key: &str) -> &str {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest)
}

fn decode(entry: &serde_json::Value) -> Result<(String, String), String> {
    if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|e| format!("`auth` is not base64: {e}"))?;
        let text = String::from_utf8(raw).map_err(|_| "`auth` is not UTF-8")?;
        let (user, pass) = text
            .split_once(':')
            .ok_or("`auth` is not base64 of user:password")?;
        return Ok((user.to_string(), pass.to_string()));
    }
    match (
        entry.get("username").and_then(|u| u.as_str()),
        entry.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(u), Some(p)) => Ok((u.to_string(), p.to_string())),
        _ => Err("neither `auth` nor `username` and `password`".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_name_hosts_with_or_without_scheme_and_path() {
        assert_eq!(host_of("https://index.docker.io/v1/"), "index.docker.io");
        assert_eq!(host_of("127.0.0.1:5000"), "127.0.0.1:5000");
        assert_eq!(host_of("http://localhost:5000"), "localhost:5000");
    }

    #[test]
    fn auth_is_base64_of_user_and_password() {
        // base64("ci:s3cr:et") — the password may hold colons.
        let entry = json!({"auth": "Y2k6czNjcjpldA=="});
        assert_eq!(decode(&entry).unwrap(), ("ci".into(), "s3cr:et".into()));
        let entry = json!({"username": "u", "password": "p"});
        assert_eq!(decode(&entry).unwrap(), ("u".into(), "p".into()));
        assert!(decode(&json!({"auth": "not base64!"})).is_err());
    }
}
