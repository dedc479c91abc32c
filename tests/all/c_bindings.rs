//! The C bindings committed in guest/c/bindings are what
//! `wit-bindgen c wit --world handler` makes from wit/ today, so a change to
//! the contract cannot leave C guests building against a stale one.
use crate::support;

use std::process::Command;

/// `c-guest bindings` regenerates the bindings in memory and finds them
/// byte for byte equal to the committed ones.
#[test]
fn committed_c_bindings_match_the_wit() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .current_dir(support::workspace())
        .args(["run", "--quiet", "--locked", "-p", "evconn-c-guest", "--", "bindings"])
        // The guests' target folder: the outer `cargo test` locks target/.
        .env("CARGO_TARGET_DIR", support::workspace().join("target").join("guests"))
        .output()
        .expect("cargo runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("up to date"), "{stderr}");
}
