//! `wasm-trim IN OUT NAME...`: writes IN to OUT without the exports NAME... (`make build`).
//!
//! Envoy calls a proxy-wasm callback only when the module exports it (proxy-wasm-cpp-host
//! `ContextBase::onResponseBody` and the others return `Continue` at once otherwise), but the Rust SDK
//! exports every callback, so a filter that never looks at bodies still pays a call into its VM for
//! every body chunk, and for `on_done` and `on_log`. Dropping the exports of the callbacks a filter
//! does not implement removes those calls; `wasm-opt` then drops the SDK code behind them.

use std::process::ExitCode;

mod trim;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(input), Some(output), names) = (args.first(), args.get(1), args.get(2..)) else {
        eprintln!("usage: wasm-trim IN.wasm OUT.wasm CALLBACK...");
        return ExitCode::from(2);
    };
    let names: Vec<&str> = names
        .unwrap_or_default()
        .iter()
        .map(String::as_str)
        .collect();
    let result = std::fs::read(input)
        .map_err(|e| format!("{input}: {e}"))
        .and_then(|bytes| trim::drop_exports(&bytes, &names).map_err(|e| format!("{input}: {e}")))
        .and_then(|out| std::fs::write(output, out).map_err(|e| format!("{output}: {e}")));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wasm-trim: {e}");
            ExitCode::FAILURE
        }
    }
}
