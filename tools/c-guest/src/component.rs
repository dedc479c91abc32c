//! A core module linked by clang for wasm32-wasi (preview 1) made into a
//! component: what `wasm-tools component new CORE --adapt
//! wasi_snapshot_preview1=wasi_snapshot_preview1.reactor.wasm` does.
//!
//! The world's types come from the custom section that the bindings' object
//! file (`handler_component_type.o`) put in the module; the reactor adapter
//! turns the module's preview 1 imports (stdio, the clock, random) into
//! preview 2 ones. The adapter is the one of the host's wasmtime release.
use std::path::Path;

use anyhow::Context;
use wasi_preview1_component_adapter_provider::{
    WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
};
use wit_component::ComponentEncoder;

/// Reads the core module at `core` and writes the component to `output`.
pub fn wrap(core: &Path, output: &Path) -> anyhow::Result<()> {
    let module = std::fs::read(core).with_context(|| format!("reading {}", core.display()))?;
    let component = ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .with_context(|| format!("{} has no component type: was the bindings' object file linked in?", core.display()))?
        .adapter(WASI_SNAPSHOT_PREVIEW1_ADAPTER_NAME, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)?
        .encode()
        .with_context(|| format!("making a component of {}", core.display()))?;
    std::fs::write(output, component).with_context(|| format!("writing {}", output.display()))
}
