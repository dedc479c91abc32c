//! `c-guest`: the C bindings, without installing `wit-bindgen-cli`.
//! `c-guest bindings` checks that the C bindings committed in
//! `guest/c/bindings/` are what `wit-bindgen c wit --world handler` makes
//! from `wit/` today; `c-guest bindings --write` makes them again. (Making
//! a component of the core module clang links is `host component`.)
mod bindings;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::bail;

const USAGE: &str = "usage: c-guest bindings [--write]";

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
        _ => bail!("{USAGE}"),
    }
}

/// The workspace's root folder, two levels above this crate.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}
