//! `c-guest`: what building a C guest needs beyond clang, without installing
//! `wit-bindgen-cli` or `wasm-tools`.
//!
//! - `c-guest bindings` checks that the C bindings committed in
//!   `guest/c/bindings/` are what `wit-bindgen c wit --world handler`
//!   makes from `wit/` today; `c-guest bindings --write` makes them again.
//! - `c-guest component CORE.wasm OUT.wasm` turns the core module clang
//!   linked into a component, bridging its WASI preview 1 imports to
//!   preview 2 with the adapter of the host's wasmtime release.
mod bindings;
mod component;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

const USAGE: &str = "usage: c-guest bindings [--write] | c-guest component CORE.wasm OUT.wasm";

fn main() -> ExitCode {
    // One line per cause, without the backtrace `RUST_BACKTRACE` would add.
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("c-guest: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["bindings"] => bindings::check(&workspace()),
        ["bindings", "--write"] => bindings::write(&workspace()),
        ["component", core, output] => component::wrap(Path::new(core), Path::new(output)),
        _ => bail!("{USAGE}"),
    }
}

/// The workspace's root folder, two levels above this crate.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
