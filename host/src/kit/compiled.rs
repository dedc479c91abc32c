//! Engines and compiled components kept for the life of the process, so a
//! test process that starts many hosts compiles each component once per
//! engine configuration.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use wasmtime::Engine;

use crate::policy::Limits;
use crate::wasm::{self, CodeCache, Compiled, Isolation, Loader};

/// What an engine's configuration depends on: the instance pool of the
/// per-connection model is sized by the connection and memory limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EngineKey {
    isolation: Isolation,
    /// `(max_connections, guest_memory)` under the per-connection model.
    pool: Option<(usize, usize)>,
}

/// A component file as it was when compiled (a rebuilt file compiles
/// again), and whether machine code was allowed.
type FileKey = (PathBuf, u64, Option<SystemTime>, bool);

/// The component at `path` compiled for a host with `isolation` and
/// `limits`, and the loader that loads it again: from this process's memory
/// when it was compiled before, else through `cache` (on disk) or the
/// compiler. Machine code made by `host compile` loads if
/// `allow_precompiled`.
pub(super) fn compiled(
    path: &Path,
    isolation: Isolation,
    limits: &Limits,
    cache: Option<&CodeCache>,
    allow_precompiled: bool,
) -> anyhow::Result<(Loader, Compiled)> {
    static ENGINES: OnceLock<Mutex<HashMap<EngineKey, Engine>>> = OnceLock::new();
    static COMPILED: OnceLock<Mutex<HashMap<(EngineKey, FileKey), Compiled>>> = OnceLock::new();

    let key = EngineKey {
        isolation,
        pool: (isolation == Isolation::Connection).then_some((limits.max_connections, limits.guest_memory)),
    };
    let engine = {
        let mut engines = ENGINES.get_or_init(Default::default).lock().expect("no panic while held");
        match engines.get(&key) {
            Some(engine) => engine.clone(),
            None => engines.entry(key).or_insert(wasm::engine(isolation, limits)?).clone(),
        }
    };
    let loader = Loader::new(engine).cache(cache.cloned()).allow_precompiled(allow_precompiled);
    let Ok(metadata) = std::fs::metadata(path) else {
        // Loading says why the file cannot be read.
        let compiled = loader.load(path)?;
        return Ok((loader, compiled));
    };
    let file = (path.to_path_buf(), metadata.len(), metadata.modified().ok(), allow_precompiled);
    // Held while compiling, so two hosts starting at once compile once.
    let mut all = COMPILED.get_or_init(Default::default).lock().expect("no panic while held");
    if let Some(compiled) = all.get(&(key, file.clone())) {
        return Ok((loader, compiled.clone()));
    }
    let compiled = loader.load(path)?;
    all.insert((key, file), compiled.clone());
    Ok((loader, compiled))
}
