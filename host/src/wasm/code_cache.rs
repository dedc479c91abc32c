//! Compiled code kept on disk between runs, so a restart does not compile
//! the component again (Python and JavaScript guests take seconds).
//!
//! An entry is named by the SHA-256 of the component's bytes and by the
//! engine's compatibility hash, so a changed component, another wasmtime or
//! other compiler settings never reuse a stale entry.
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// A folder of compiled components.
#[derive(Debug, Clone)]
pub struct CodeCache {
    dir: PathBuf,
}

impl CodeCache {
    /// A cache in `dir`, created when first written.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CodeCache { dir: dir.into() }
    }

    /// The user's cache folder: `$XDG_CACHE_HOME/evconn`, else
    /// `$HOME/.cache/evconn`; `None` if neither variable is set.
    pub fn default_dir() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_CACHE_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
        };
        Some(base.join("evconn"))
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn entry(&self, engine: &Engine, bytes: &[u8]) -> PathBuf {
        let mut settings = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut settings);
        let digest = Sha256::digest(bytes);
        let name: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}-{:016x}.cwasm", settings.finish()))
    }

    /// The compiled form of `bytes`: from the cache when there, else
    /// compiled and stored. A cache that cannot be read or written costs a
    /// compilation, never a failure.
    pub fn compile(&self, engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
        let entry = self.entry(engine, bytes);
        if entry.exists() {
            // SAFETY: entries are written only by `store` below, from
            // wasmtime's own serialisation, in the operator's cache folder;
            // the name pins the engine settings they were made with.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => {
                    tracing::debug!(entry = %entry.display(), "compiled code from the cache");
                    return Ok(component);
                }
                Err(e) => tracing::warn!(entry = %entry.display(), error = %e, "unusable cache entry; compiling again"),
            }
        }
        let component = Component::new(engine, bytes)?;
        match component.serialize() {
            Ok(compiled) => {
                if let Err(e) = store(&entry, &compiled) {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot write the code cache");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot serialise compiled code for the cache"),
        }
        Ok(component)
    }
}

/// Writes `bytes` to `path` through a temporary file, so that a reader never
/// sees half an entry. The temporary file is this write's alone: hosts in
/// one process (the test kit's) compile different components at once, and
/// with one temporary name per process an entry could get another
/// component's code.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("cache entries live in a folder");
    std::fs::create_dir_all(dir)?;
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    let temporary = dir.join(format!(".{}.{write}.tmp", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Entries written at the same time from threads of one process each
    /// end up with their own bytes.
    #[test]
    fn concurrent_writes_keep_each_entry_its_own() {
        let dir = std::env::temp_dir().join(format!("evconn-code-cache-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let entries: Vec<(PathBuf, Vec<u8>)> = (0..8u8)
            .map(|n| (dir.join(format!("entry-{n}.cwasm")), vec![n; 4 << 20]))
            .collect();
        let start = std::sync::Barrier::new(entries.len());
        std::thread::scope(|scope| {
            for (path, bytes) in &entries {
                let start = &start;
                scope.spawn(move || {
                    start.wait();
                    store(path, bytes).expect("the entry is written");
                });
            }
        });
        for (path, bytes) in &entries {
            let stored = std::fs::read(path).expect("the entry exists");
            assert!(stored == *bytes, "{} holds another entry's bytes", path.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
