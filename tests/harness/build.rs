// tests/soak links the three filter crates into one native test binary, to read each one's worst-case
// shared memory from its `memory` module. Each crate's `proxy_wasm::main!` exports `_initialize`
// (only meaningful in the Wasm module, never called natively), so test binaries allow the duplicate
// definitions rather than the filters change for a test.
fn main() {
    println!("cargo:rustc-link-arg-tests=-Wl,--allow-multiple-definition");
    println!("cargo:rerun-if-changed=build.rs");
}
