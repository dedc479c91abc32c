//! The C bindings of the `handler` world: made in memory exactly as
//! `wit-bindgen c wit --world handler` makes them, then compared with the
//! committed files or written over them.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use wit_bindgen_core::Files;
use wit_parser::Resolve;

/// Where the committed bindings live, from the workspace's root.
const BINDINGS_DIR: &str = "guest/c/bindings";
/// The world every evconn guest targets.
const WORLD: &str = "handler";
const REGENERATE: &str = "cargo run -p evconn-c-guest -- bindings --write";

/// File name to contents, as `wit-bindgen c` would write them.
fn generate(workspace: &Path) -> anyhow::Result<BTreeMap<String, Vec<u8>>> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_path(workspace.join("wit")).context("reading wit/")?;
    let world = resolve.select_world(&[package], Some(WORLD))?;
    let mut files = Files::default();
    // Default options: the same as the command line without flags.
    wit_bindgen_c::Opts::default().build().generate(&mut resolve, world, &mut files)?;
    Ok(files.iter().map(|(name, contents)| (name.to_string(), contents.to_vec())).collect())
}

/// Fails, naming the first stale, missing or extra file, unless the committed
/// bindings are exactly the generated ones.
pub fn check(workspace: &Path) -> anyhow::Result<()> {
    let dir = workspace.join(BINDINGS_DIR);
    let generated = generate(workspace)?;
    for (name, contents) in &generated {
        match std::fs::read(dir.join(name)) {
            Ok(committed) if committed == *contents => {}
            Ok(_) => bail!("{BINDINGS_DIR}/{name} is stale: wit/ changed since it was generated. Run `{REGENERATE}`"),
            Err(e) => bail!("{BINDINGS_DIR}/{name} cannot be read ({e}). Run `{REGENERATE}`"),
        }
    }
    for name in committed_names(&dir)? {
        if !generated.contains_key(&name) {
            bail!("{BINDINGS_DIR}/{name} is not generated from wit/ any more. Run `{REGENERATE}`");
        }
    }
    eprintln!("{BINDINGS_DIR} is up to date with wit/ ({} files)", generated.len());
    Ok(())
}

/// Replaces the committed bindings with freshly generated ones.
pub fn write(workspace: &Path) -> anyhow::Result<()> {
    let dir = workspace.join(BINDINGS_DIR);
    let generated = generate(workspace)?;
    for name in committed_names(&dir)? {
        if !generated.contains_key(&name) {
            std::fs::remove_file(dir.join(&name)).with_context(|| format!("removing {BINDINGS_DIR}/{name}"))?;
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {BINDINGS_DIR}"))?;
    for (name, contents) in &generated {
        std::fs::write(dir.join(name), contents).with_context(|| format!("writing {BINDINGS_DIR}/{name}"))?;
        eprintln!("wrote {BINDINGS_DIR}/{name}");
    }
    Ok(())
}

/// The names of the files now in `dir` (none if it does not exist).
fn committed_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {BINDINGS_DIR}")),
    };
    entries
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()
        .with_context(|| format!("listing {BINDINGS_DIR}"))
}
