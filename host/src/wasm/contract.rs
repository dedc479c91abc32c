//! The contract as files: the WIT package this host serves (`wit/`, with
//! the `wasi:keyvalue` it imports in `deps/`), built into the binary so that
//! `host wit` and `host new` give guest authors outside this repository
//! the exact package their handler will be linked against; and a core
//! module made into a component, as `host component` does for C guests.
use anyhow::Context;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;

/// Every file of the WIT package, by path under the package's folder.
pub const WIT_FILES: [(&str, &str); 13] = [
    ("callbacks.wit", include_str!("../../../wit/callbacks.wit")),
    ("connection.wit", include_str!("../../../wit/connection.wit")),
    ("listener.wit", include_str!("../../../wit/listener.wit")),
    ("outbound.wit", include_str!("../../../wit/outbound.wit")),
    ("reactor.wit", include_str!("../../../wit/reactor.wit")),
    ("timers.wit", include_str!("../../../wit/timers.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("world.wit", include_str!("../../../wit/world.wit")),
    ("deps/keyvalue/atomic.wit", include_str!("../../../wit/deps/keyvalue/atomic.wit")),
    ("deps/keyvalue/batch.wit", include_str!("../../../wit/deps/keyvalue/batch.wit")),
    ("deps/keyvalue/store.wit", include_str!("../../../wit/deps/keyvalue/store.wit")),
    ("deps/keyvalue/watch.wit", include_str!("../../../wit/deps/keyvalue/watch.wit")),
    ("deps/keyvalue/world.wit", include_str!("../../../wit/deps/keyvalue/world.wit")),
];

/// Writes the WIT package into `dir` (made if need be).
pub fn write_wit(dir: &std::path::Path) -> anyhow::Result<()> {
    for (path, text) in WIT_FILES {
        let file = dir.join(path);
        let parent = file.parent().expect("a file in a folder");
        std::fs::create_dir_all(parent).with_context(|| format!("cannot make {}", parent.display()))?;
        std::fs::write(&file, text).with_context(|| format!("cannot write {}", file.display()))?;
    }
    Ok(())
}

/// A core module linked for wasm32-wasi (WASI preview 1), such as clang
/// makes from C, made into a component: what `wasm-tools component new
/// CORE --adapt wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm`
/// does. The world's types come from the custom section the C bindings'
/// object file (`handler_component_type.o`) put in the module; the reactor
/// adapter, of this host's wasmtime release, turns its preview 1 imports
/// (stdio, clocks, random) into preview 2 ones.
pub fn component_from_core(module: &[u8]) -> anyhow::Result<Vec<u8>> {
    ComponentEncoder::default()
        .validate(true)
        .module(module)
        .context("the module has no component type: was the bindings' object file linked in?")?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)?
        .encode()
        .context("cannot make a component of the module")
}
