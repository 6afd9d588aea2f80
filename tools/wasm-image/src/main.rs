//! `wasm-image`: packages the filters' Wasm modules as images Istio's fetcher loads, without a Docker
//! daemon, pushes and pulls them through the registry HTTP API, and writes the pushed digests into the
//! release overlay. The Makefile's `image`, `push` and `pin` targets call it; see istio/README.md.

mod auth;
mod image;
mod layout;
mod overlay;
mod registry;

use std::path::{Path, PathBuf};

const USAGE: &str = "\
usage:
  wasm-image build [--format compat|compat-oci|oci] --out DIR NAME=MODULE...
      write each module's image as an OCI image layout at DIR/NAME; print `NAME sha256:...`
  wasm-image push --registry HOST[:PORT][/PATH] --tag TAG --layouts DIR NAME...
      push DIR/NAME to REGISTRY/NAME:TAG; print `REGISTRY/NAME:TAG sha256:...`
  wasm-image pull --out FILE REFERENCE
      pull REFERENCE, take the module out as Istio's fetcher does, write it to FILE; print the digest
  wasm-image digest REFERENCE
      print the image digest the registry has for REFERENCE
  wasm-image pin --registry REGISTRY --tag TAG [--layouts DIR] --overlay FILE NAME...
      write FILE: each WasmPlugin NAME pulls oci://REGISTRY/NAME:TAG, checked against the digest the
      registry has now (with --layouts: the digest of the local image DIR/NAME, before any push)
  wasm-image pin --http-base URL --overlay FILE NAME=MODULE...
      write FILE: each WasmPlugin NAME downloads URL/<module file name>, checked against its SHA-256
Credentials: `auths` of $DOCKER_CONFIG/config.json (default ~/.docker/config.json).
Plain HTTP for registries on localhost/127.0.0.1/[::1] only.";

/// Flags (`--name value`) and positional arguments.
struct Args {
    flags: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Args {
    fn parse(raw: &[String]) -> Result<Args, String> {
        let mut flags = Vec::new();
        let mut positional = Vec::new();
        let mut it = raw.iter();
        while let Some(arg) = it.next() {
            if let Some(name) = arg.strip_prefix("--") {
                let value = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                flags.push((name.to_string(), value.clone()));
            } else {
                positional.push(arg.clone());
            }
        }
        Ok(Args { flags, positional })
    }

    fn opt(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn req(&self, name: &str) -> Result<&str, String> {
        self.opt(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("--{name} is required"))
    }

    fn only(&self, allowed: &[&str]) -> Result<(), String> {
        match self
            .flags
            .iter()
            .find(|(n, _)| !allowed.contains(&n.as_str()))
        {
            Some((n, _)) => Err(format!("unknown option --{n}")),
            None => Ok(()),
        }
    }

    fn names(&self) -> Result<&[String], String> {
        if self.positional.is_empty() {
            return Err("no images named".into());
        }
        Ok(&self.positional)
    }
}

/// `NAME=PATH`.
fn name_and_path(arg: &str) -> Result<(&str, PathBuf), String> {
    arg.split_once('=')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        .map(|(n, p)| (n, PathBuf::from(p)))
        .ok_or_else(|| format!("`{arg}`: expected NAME=MODULE"))
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn build(args: &Args) -> Result<(), String> {
    args.only(&["format", "out"])?;
    let format = image::Format::parse(args.opt("format").unwrap_or("compat"))?;
    let out = PathBuf::from(args.req("out")?);
    for arg in args.names()? {
        let (name, module) = name_and_path(arg)?;
        let img = image::build(&read(&module)?, format)
            .map_err(|e| format!("{}: {e}", module.display()))?;
        layout::write(&out.join(name), &img)?;
        println!("{name} {}", img.digest());
    }
    Ok(())
}

async fn push(args: &Args) -> Result<(), String> {
    args.only(&["registry", "tag", "layouts"])?;
    let (reg, tag) = (args.req("registry")?, args.req("tag")?);
    let layouts = PathBuf::from(args.req("layouts")?);
    for name in args.names()? {
        let img = layout::read(&layouts.join(name))?;
        let reference = registry::reference(reg, name, tag)?;
        let digest = registry::Registry::for_reference(&reference)?
            .push(&reference, &img)
            .await?;
        println!("{reference} {digest}");
    }
    Ok(())
}

async fn pull(args: &Args) -> Result<(), String> {
    args.only(&["out"])?;
    let out = PathBuf::from(args.req("out")?);
    let [reference] = args.positional.as_slice() else {
        return Err("pull takes one image reference".into());
    };
    let reference = reference
        .parse()
        .map_err(|e| format!("`{reference}`: {e}"))?;
    let (module, digest) = registry::Registry::for_reference(&reference)?
        .pull_module(&reference)
        .await?;
    std::fs::write(&out, module).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{digest}");
    Ok(())
}

async fn digest(args: &Args) -> Result<(), String> {
    args.only(&[])?;
    let [reference] = args.positional.as_slice() else {
        return Err("digest takes one image reference".into());
    };
    let reference = reference
        .parse()
        .map_err(|e| format!("`{reference}`: {e}"))?;
    let digest = registry::Registry::for_reference(&reference)?
        .digest(&reference)
        .await?;
    println!("{digest}");
    Ok(())
}

async fn pin(args: &Args) -> Result<(), String> {
    let overlay_path = PathBuf::from(args.req("overlay")?);
    let mut sources = Vec::new();
    let how;
    if let Some(base) = args.opt("http-base") {
        args.only(&["http-base", "overlay"])?;
        let base = base.trim_end_matches('/');
        for arg in args.names()? {
            let (name, module) = name_and_path(arg)?;
            let file = module
                .file_name()
                .and_then(|f| f.to_str())
                .ok_or_else(|| format!("{}: no file name", module.display()))?;
            let digest = image::sha256_digest(&read(&module)?);
            sources.push(overlay::Source {
                plugin: name.to_string(),
                url: format!("{base}/{file}"),
                sha256: digest.trim_start_matches("sha256:").to_string(),
            });
        }
        how = format!("Modules served over HTTP(S) from {base}.");
    } else {
        args.only(&["registry", "tag", "overlay", "layouts"])?;
        let (reg, tag) = (args.req("registry")?, args.req("tag")?);
        for name in args.names()? {
            let reference = registry::reference(reg, name, tag)?;
            // The build is reproducible, so the local image's digest is the one any push of it gets.
            let digest = match args.opt("layouts") {
                Some(dir) => layout::read(&Path::new(dir).join(name))?.digest(),
                None => {
                    registry::Registry::for_reference(&reference)?
                        .digest(&reference)
                        .await?
                }
            };
            let hex = digest
                .strip_prefix("sha256:")
                .ok_or_else(|| format!("{reference}: digest `{digest}` is not sha256"))?;
            sources.push(overlay::Source {
                plugin: name.clone(),
                url: format!("oci://{}/{name}:{tag}", reg.trim_end_matches('/')),
                sha256: hex.to_string(),
            });
        }
        how = match args.opt("layouts") {
            Some(dir) => format!("Images {reg}/NAME:{tag}, digests of the local builds in {dir}."),
            None => format!("Images pushed to {reg} with tag {tag}."),
        };
    }
    for s in &sources {
        overlay::check(s)?;
    }
    if let Some(dir) = overlay_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&overlay_path, overlay::render(&sources, &how))
        .map_err(|e| format!("{}: {e}", overlay_path.display()))?;
    for s in &sources {
        println!("{} {} sha256:{}", s.plugin, s.url, s.sha256);
    }
    Ok(())
}

async fn run(raw: &[String]) -> Result<(), String> {
    let (command, rest) = raw.split_first().ok_or(USAGE)?;
    let args = Args::parse(rest)?;
    match command.as_str() {
        "build" => build(&args),
        "push" => push(&args).await,
        "pull" => pull(&args).await,
        "digest" => digest(&args).await,
        "pin" => pin(&args).await,
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown command `{other}`\n{USAGE}")),
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // reqwest is built without a crypto provider of its own (see Cargo.toml): ring serves HTTPS.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = run(&raw).await {
        eprintln!("wasm-image: {e}");
        std::process::exit(1);
    }
}
