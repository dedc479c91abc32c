//! The host's layers (see `host/src/lib.rs`) hold in the code: a module
//! names only modules of its own layer or of layers below, and of the two
//! top ones only the command line names the other (it runs the kit's
//! scripts); the kit never names the command line.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support;

/// Each top-level module of the host and its layer, from the bottom.
/// Modules of one layer may not name each other unless they are the same
/// module: `policy` and `telemetry` are independent, as are `net` and
/// `store`, and `cli` and `kit` (but the command line runs the kit's
/// scripts, so `cli` may name `kit`).
const LAYERS: [(&str, u8); 9] = [
    ("base", 0),
    ("policy", 1),
    ("telemetry", 1),
    ("net", 2),
    ("store", 2),
    ("wasm", 3),
    ("serve", 4),
    ("kit", 5),
    ("cli", 5),
];

/// The allowed names across one layer: (from, to).
const SIDEWAYS: [(&str, &str); 1] = [("cli", "kit")];

fn layer(module: &str) -> Option<u8> {
    LAYERS.iter().find(|(name, _)| *name == module).map(|(_, layer)| *layer)
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

/// The top-level modules a file's code names with `crate::`, comments left
/// out: doc links to other layers are not imports.
fn named_modules(text: &str) -> Vec<String> {
    let mut named = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            named.push(name);
        }
    }
    named
}

/// No module names one of a higher layer, or a sibling it may not.
#[test]
fn no_module_names_a_layer_above_its_own() {
    let src = support::workspace().join("host").join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut folders = 0;
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap();
        let mut parts = relative.components();
        let first = parts.next().unwrap().as_os_str().to_str().unwrap().to_string();
        if parts.next().is_none() {
            // lib.rs and main.rs sit above every layer.
            assert!(
                ["lib.rs", "main.rs"].contains(&first.as_str()),
                "{first}: every module belongs in a layer's folder"
            );
            continue;
        }
        folders += 1;
        let own = layer(&first).unwrap_or_else(|| panic!("host/src/{first}/ has no layer in tests/all/layers.rs"));
        let text = std::fs::read_to_string(file).unwrap();
        for named in named_modules(&text) {
            let Some(theirs) = layer(&named) else { continue };
            let allowed = named == first || theirs < own || SIDEWAYS.contains(&(first.as_str(), named.as_str()));
            if !allowed {
                wrong.entry(relative.display().to_string()).or_default().push(named);
            }
        }
    }
    assert!(folders > 30, "only {folders} files were read");
    assert!(wrong.is_empty(), "modules that name a layer above their own, or a sibling: {wrong:#?}");
}

/// The check sees a name in code and ignores one in a comment.
#[test]
fn names_are_read_from_code_not_comments() {
    let text = "use crate::net::Connection; // see crate::serve\n/// [`crate::cli`]\nlet x = crate::wasm::engine();";
    assert_eq!(named_modules(text), ["net", "wasm"]);
}
