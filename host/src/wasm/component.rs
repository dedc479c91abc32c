//! Loading a guest: reading and compiling the component (or, if the
//! operator allows it, taking machine code `host compile` made), and
//! checking it against the `handler` world before serving.
use std::path::{Path, PathBuf};

use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;
use wasmtime::{Engine, Precompiled};

use super::bindings::HandlerPre;
use super::code_cache::{CodeCache, compile_logged};
use super::engine::linker;
use super::state::HostState;

/// Why a component cannot be served. Each message is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    // The field is not named `source`: thiserror would make it the error's
    // source, and `{:#}` would then print the system's message twice.
    #[error("cannot read {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        error: std::io::Error,
    },
    /// The file is not WebAssembly at all.
    #[error("{path} is not a WebAssembly component (no `\\0asm` header)")]
    NotWasm {
        /// The file.
        path: PathBuf,
    },
    /// The file holds machine code (`host compile`'s), and the operator did
    /// not allow that: it runs without the checks compiling makes.
    #[error(
        "{path} is precompiled machine code, which runs outside the sandbox's checks: \
         give --allow-precompiled to run files you made with `host compile`"
    )]
    Precompiled {
        /// The file.
        path: PathBuf,
    },
    /// The file is a core module, not a component.
    #[error(
        "{path} is a core WebAssembly module, not a component: build it for \
         wasm32-wasip2 or wrap it with `wasm-tools component new`"
    )]
    CoreModule {
        /// The file.
        path: PathBuf,
    },
    /// The component is malformed or cannot be compiled.
    #[error("cannot compile {path}: {reason}")]
    Compile {
        /// The file.
        path: PathBuf,
        /// What wasmtime said, on one line.
        reason: String,
    },
    /// The component does not fit the `evconn:listener/handler` world.
    #[error("{path} is not an evconn handler (world evconn:listener/handler@0.2.0): {reason}")]
    WrongWorld {
        /// The file.
        path: PathBuf,
        /// The missing import or export, on one line.
        reason: String,
    },
}

/// A guest compiled and linked against the host's imports, ready to
/// instantiate as often as needed.
#[derive(Clone)]
pub struct Compiled {
    pub(super) pre: HandlerPre<HostState>,
    /// The guest imports `connection.write-input`: the host keeps a copy of
    /// what it hands to `on-data` while the call runs. Guests that do not
    /// import it pay nothing for it.
    pub(super) keeps_input: bool,
}

impl Compiled {
    /// The engine it was compiled for.
    pub fn engine(&self) -> &Engine {
        self.pre.engine()
    }
}

/// Where the guest imports `write-input` from: the interface, then the method.
const WRITE_INPUT_IMPORT: (&str, &str) = ("evconn:listener/connection@0.2.0", "[method]connection.write-input");

/// Whether `component` imports `connection.write-input`.
fn imports_write_input(engine: &Engine, component: &Component) -> bool {
    let (interface, method) = WRITE_INPUT_IMPORT;
    let ty = component.component_type();
    match ty.get_import(engine, interface).map(|import| import.ty) {
        Some(ComponentItem::ComponentInstance(instance)) => instance.get_export(engine, method).is_some(),
        _ => false,
    }
}

/// How components are loaded: the engine they are compiled for, the code
/// cache, and whether machine code made by `host compile` may run.
#[derive(Clone)]
pub struct Loader {
    engine: Engine,
    cache: Option<CodeCache>,
    allow_precompiled: bool,
}

impl Loader {
    /// Loads for `engine`, compiling every time and refusing machine code.
    pub fn new(engine: Engine) -> Self {
        Loader { engine, cache: None, allow_precompiled: false }
    }

    /// Keeps compiled code in `cache` across runs.
    pub fn cache(mut self, cache: Option<CodeCache>) -> Self {
        self.cache = cache;
        self
    }

    /// Whether files `host compile` made may run (`--allow-precompiled`).
    pub fn allow_precompiled(mut self, allow: bool) -> Self {
        self.allow_precompiled = allow;
        self
    }

    /// The engine components are compiled for.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Reads, compiles and links the component at `path`: a component, or,
    /// if allowed, a file made by `host compile` for this host.
    pub fn load(&self, path: &Path) -> Result<Compiled, LoadError> {
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read { path: path.into(), error })?;
        let compile_error = |e: wasmtime::Error| LoadError::Compile { path: path.into(), reason: one_line(&e) };
        let component = if Engine::detect_precompiled(&bytes) == Some(Precompiled::Component) {
            if !self.allow_precompiled {
                return Err(LoadError::Precompiled { path: path.into() });
            }
            // SAFETY: the operator allowed machine code (--allow-precompiled,
            // whose docs say to give it only for files made by `host
            // compile`); wasmtime checks it matches this engine's version
            // and settings.
            unsafe { Component::deserialize(&self.engine, &bytes) }.map_err(|e| LoadError::Compile {
                path: path.into(),
                reason: format!(
                    "{} (precompiled by another host or with other settings? run `host compile` again)",
                    one_line(&e)
                ),
            })?
        } else {
            check_header(path, &bytes)?;
            match &self.cache {
                Some(cache) => cache.compile(&self.engine, &bytes, path),
                None => compile_logged(&self.engine, &bytes, path),
            }
            .map_err(compile_error)?
        };
        let wrong_world = |e: wasmtime::Error| LoadError::WrongWorld { path: path.into(), reason: one_line(&e) };
        let linker = linker(&self.engine).map_err(compile_error)?;
        let pre = linker.instantiate_pre(&component).map_err(wrong_world)?;
        let keeps_input = imports_write_input(&self.engine, &component);
        let pre = HandlerPre::new(pre).map_err(wrong_world)?;
        Ok(Compiled { pre, keeps_input })
    }
}

/// Compiles the component at `path` for this machine and host: what
/// `host compile` writes.
pub fn precompile(engine: &Engine, path: &Path) -> Result<Vec<u8>, LoadError> {
    let bytes = std::fs::read(path).map_err(|error| LoadError::Read { path: path.into(), error })?;
    check_header(path, &bytes)?;
    // Linking checks the world, so a file that could never serve is refused
    // now; the code compiled for that is what gets written.
    let compiled = Loader::new(engine.clone()).load(path)?;
    compiled
        .pre
        .instance_pre()
        .component()
        .serialize()
        .map_err(|e| LoadError::Compile { path: path.into(), reason: one_line(&e) })
}

/// Refuses files that are not components before wasmtime sees them, with
/// a message that says what they are.
fn check_header(path: &Path, bytes: &[u8]) -> Result<(), LoadError> {
    if !bytes.starts_with(b"\0asm") {
        return Err(LoadError::NotWasm { path: path.into() });
    }
    // Bytes 4..8 are the version: 1 for a core module, 0x1000d (layer 1)
    // for a component.
    if bytes.get(4..8) == Some(&[1, 0, 0, 0]) {
        return Err(LoadError::CoreModule { path: path.into() });
    }
    Ok(())
}

/// An error and its causes on one line.
fn one_line(error: &wasmtime::Error) -> String {
    format!("{error:#}").replace('\n', " ")
}

/// The name guest output is tagged with: the file name without `.wasm`.
pub fn name(path: &Path) -> String {
    path.file_stem().map_or_else(|| path.display().to_string(), |s| s.to_string_lossy().into_owned())
}
