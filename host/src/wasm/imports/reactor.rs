//! `evconn:listener/reactor`: the guest's view of the event loop.
use crate::wasm::bindings::evconn::listener::reactor::Host;
use crate::wasm::state::HostState;

impl Host for HostState {
    fn loop_exit(&mut self) -> wasmtime::Result<()> {
        tracing::info!(component = %self.component, "guest asked the host to exit");
        self.lifecycle.stop();
        Ok(())
    }
}
