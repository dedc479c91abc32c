//! Compiled code kept on disk between runs, so a restart does not compile
//! the component again (Python and JavaScript guests take seconds).
//!
//! An entry is named by the SHA-256 of the component's bytes and by the
//! engine's compatibility hash, so a changed component, another wasmtime or
//! other compiler settings never reuse a stale entry.
//!
//! An entry is machine code the host runs as it is, so the cache is read
//! only from a folder that the host's user owns and nobody else can write
//! to (checked when it is opened, and again with each entry), and an entry
//! that does not deserialize is compiled again, never trusted.
use std::fs::{DirBuilder, Metadata};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
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

/// Why a folder cannot hold the code cache.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// It could not be made or looked at.
    #[error("cannot use {dir} as the code cache: {error}")]
    Io {
        /// The folder.
        dir: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// Someone other than the host's user could put code there.
    #[error(
        "the code cache {dir} is {why}: the host would run machine code someone else put there; \
         `chmod go-w` it, or give another --cache-dir, or --no-cache"
    )]
    Unsafe {
        /// The folder.
        dir: PathBuf,
        /// What is wrong with it.
        why: String,
    },
}

/// Why `metadata` is not that of a file or folder only the host's user can
/// write, if it is not.
fn writable_by_others(metadata: &Metadata) -> Option<String> {
    let me = rustix::process::geteuid().as_raw();
    if metadata.uid() != me {
        return Some(format!("owned by user {}, not by the host's user {me}", metadata.uid()));
    }
    let mode = metadata.mode() & 0o7777;
    (mode & 0o022 != 0).then(|| format!("writable by group or others (mode {mode:04o})"))
}

impl CodeCache {
    /// The cache in `dir`, made (readable and writable by the host's user
    /// alone) if it does not exist; refused if anyone else may write there.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, CacheError> {
        let dir = dir.into();
        let io = |error| CacheError::Io { dir: dir.clone(), error };
        DirBuilder::new().recursive(true).mode(0o700).create(&dir).map_err(io)?;
        let metadata = std::fs::metadata(&dir).map_err(io)?;
        if !metadata.is_dir() {
            return Err(CacheError::Unsafe { dir, why: "not a folder".into() });
        }
        if let Some(why) = writable_by_others(&metadata) {
            return Err(CacheError::Unsafe { dir, why });
        }
        Ok(CodeCache { dir })
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

    /// Why the entry at `entry` may not be run, if it may not: the folder
    /// or the file became writable by someone else since the cache opened.
    fn untrusted(&self, entry: &Path) -> Option<String> {
        let folder = match std::fs::metadata(&self.dir) {
            Ok(metadata) => writable_by_others(&metadata),
            Err(e) => Some(e.to_string()),
        };
        let file = match std::fs::symlink_metadata(entry) {
            Ok(metadata) if metadata.is_file() => writable_by_others(&metadata),
            Ok(_) => Some("not a plain file".into()),
            Err(e) => Some(e.to_string()),
        };
        folder.map(|why| format!("the folder is {why}")).or(file.map(|why| format!("the entry is {why}")))
    }

    /// The compiled form of `bytes`: from the cache when there and safe to
    /// run, else compiled and stored. A cache that cannot be read or written
    /// costs a compilation, never a failure.
    pub fn compile(&self, engine: &Engine, bytes: &[u8], path: &Path) -> wasmtime::Result<Component> {
        let entry = self.entry(engine, bytes);
        let trusted = match entry.exists().then(|| self.untrusted(&entry)) {
            Some(None) => true,
            Some(Some(why)) => {
                tracing::warn!(entry = %entry.display(), %why, "cache entry not trusted; compiling again");
                false
            }
            None => false,
        };
        if trusted {
            // SAFETY: the entry is in a folder, and is a file, that only the
            // host's user can write (checked just above); such entries are
            // written by `store` below from wasmtime's own serialisation,
            // and the name pins the engine settings they were made with.
            match unsafe { Component::deserialize_file(engine, &entry) } {
                Ok(component) => {
                    tracing::debug!(entry = %entry.display(), "compiled code from the cache");
                    return Ok(component);
                }
                Err(e) => tracing::warn!(entry = %entry.display(), error = %e, "unusable cache entry; compiling again"),
            }
        }
        let component = compile_logged(engine, bytes, path)?;
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

/// Compiles the component `bytes` (read from `path`), saying so before and
/// after: Python and JavaScript components take seconds.
pub(crate) fn compile_logged(engine: &Engine, bytes: &[u8], path: &Path) -> wasmtime::Result<Component> {
    let started = std::time::Instant::now();
    tracing::info!(target: "compile", component = %path.display(), kib = bytes.len() >> 10, "compiling");
    let component = Component::new(engine, bytes)?;
    let took = started.elapsed();
    tracing::info!(target: "compile", component = %path.display(), ?took, "compiled");
    Ok(component)
}

/// Writes `bytes` to `path` through a temporary file, so that a reader never
/// sees half an entry. The temporary file is this write's alone: hosts in
/// one process (the test kit's) compile different components at once, and
/// with one temporary name per process an entry could get another
/// component's code.
fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().expect("cache entries live in a folder");
    let write = WRITES.fetch_add(1, Ordering::Relaxed);
    let temporary = dir.join(format!(".{}.{write}.tmp", std::process::id()));
    // Readable and writable by the host's user alone, whatever the umask.
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temporary)?;
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
        std::fs::create_dir_all(&dir).unwrap();
        let entries: Vec<(PathBuf, Vec<u8>)> =
            (0..8u8).map(|n| (dir.join(format!("entry-{n}.cwasm")), vec![n; 4 << 20])).collect();
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

    /// A folder anyone may write to is refused; one the host's user alone
    /// can write to opens, and a missing one is made so.
    #[test]
    fn opens_only_a_folder_nobody_else_can_write() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("evconn-code-cache-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let made = base.join("made");
        CodeCache::open(&made).expect("a new folder opens");
        assert_eq!(std::fs::metadata(&made).unwrap().mode() & 0o777, 0o700);
        std::fs::set_permissions(&made, std::fs::Permissions::from_mode(0o777)).unwrap();
        let error = CodeCache::open(&made).unwrap_err().to_string();
        assert!(error.contains("writable by group or others (mode 0777)"), "{error}");
        std::fs::write(base.join("file"), b"").unwrap();
        assert!(CodeCache::open(base.join("file")).is_err(), "a file is not a folder");
        let _ = std::fs::remove_dir_all(&base);
    }
}
