//! `evconn:listener/connection`: the guest's handles to accepted connections.
use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, WasmList};

use crate::net::Connection;
use crate::wasm::bindings::evconn::listener::connection::{Host, HostConnection};
use crate::wasm::bindings::{ErrorCode, PeerCertificate, SocketAddress, TlsInfo};
use crate::wasm::state::HostState;

/// A table entry naming a connection. Dropping it never closes the
/// connection: see the WIT docs on ownership.
pub struct ConnectionHandle(Arc<Connection>);

impl ConnectionHandle {
    /// A handle to `conn`.
    pub fn new(conn: Arc<Connection>) -> Self {
        ConnectionHandle(conn)
    }
}

/// Where the guest imports `write` from: the interface, then the method.
const WRITE_IMPORT: (&str, &str) = ("evconn:listener/connection@0.2.0", "[method]connection.write");

/// Defines `write` again over the generated binding, which copies the list
/// out of the guest's memory into a `Vec` before the call: this one hands
/// the socket the guest's memory itself, and copies only what the socket
/// does not take at once. For an echo that is one copy of every byte fewer.
pub fn add_write_from_guest_memory(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    let write = |store: StoreContextMut<'_, HostState>, (this, data): (Resource<ConnectionHandle>, WasmList<u8>)| {
        let conn = store.data().conn(&this)?;
        // Lifting checked that the list lies within the guest's memory.
        Ok((conn.write(data.as_le_slice(&store)).map_err(ErrorCode::from),))
    };
    let (interface, method) = WRITE_IMPORT;
    // Without shadowing, defining a name that is there fails: that is how
    // this knows the generated `write` is there to replace. A name that
    // drifted from the WIT would otherwise add a function nobody calls.
    if linker.instance(interface)?.func_wrap(method, write).is_ok() {
        wasmtime::bail!("{interface} has no {method} to replace: the WIT and the host disagree");
    }
    linker.allow_shadowing(true);
    let defined = linker.instance(interface)?.func_wrap(method, write);
    linker.allow_shadowing(false);
    defined
}

impl HostState {
    fn conn(&self, handle: &Resource<ConnectionHandle>) -> wasmtime::Result<&Arc<Connection>> {
        Ok(&self.table.get(handle)?.0)
    }
}

impl Host for HostState {}

impl HostConnection for HostState {
    fn id(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<u64> {
        Ok(self.conn(&this)?.id())
    }

    /// Not called: `add_write_from_guest_memory` replaces it in the linker.
    fn write(&mut self, this: Resource<ConnectionHandle>, data: Vec<u8>) -> wasmtime::Result<Result<(), ErrorCode>> {
        Ok(self.conn(&this)?.write(&data).map_err(ErrorCode::from))
    }

    fn write_input(
        &mut self,
        this: Resource<ConnectionHandle>,
        offset: u32,
        length: u32,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        let conn = self.conn(&this)?;
        let Some(input) = &self.input else { return Ok(Err(ErrorCode::InvalidState)) };
        // u32 fits in usize on every target the host builds for.
        let (offset, length) = (offset as usize, length as usize);
        let Some(bytes) = offset.checked_add(length).and_then(|end| input.get(offset..end)) else {
            return Ok(Err(ErrorCode::InvalidArgument));
        };
        Ok(conn.write(bytes).map_err(ErrorCode::from))
    }

    fn shutdown_write(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<Result<(), ErrorCode>> {
        Ok(self.conn(&this)?.shutdown_write().map_err(ErrorCode::from))
    }

    fn close(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.conn(&this)?.close_by_guest();
        Ok(())
    }

    fn pause_reading(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.conn(&this)?.set_reading_paused(true);
        Ok(())
    }

    fn resume_reading(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.conn(&this)?.set_reading_paused(false);
        Ok(())
    }

    fn queued(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<u64> {
        Ok(self.conn(&this)?.queued() as u64)
    }

    fn write_room(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<u64> {
        Ok(self.conn(&this)?.write_room() as u64)
    }

    fn set_drain_watermark(&mut self, this: Resource<ConnectionHandle>, low: Option<u64>) -> wasmtime::Result<()> {
        // A watermark beyond what the host can hold is the same as none lower.
        let low = low.map(|low| usize::try_from(low).unwrap_or(usize::MAX));
        self.conn(&this)?.set_drain_watermark(low);
        Ok(())
    }

    fn peer_address(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<SocketAddress> {
        Ok(self.conn(&this)?.peer().clone().into())
    }

    fn local_address(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<SocketAddress> {
        Ok(self.conn(&this)?.local().clone().into())
    }

    /// What the handshake of a connection accepted on a TLS listener
    /// negotiated; `None` for a plaintext one.
    fn tls(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<Option<TlsInfo>> {
        let info = self.conn(&this)?.with_tls(crate::net::tls::TlsInfo::of);
        Ok(info.map(|info| TlsInfo {
            version: info.version,
            cipher_suite: info.cipher_suite,
            server_name: info.server_name,
            alpn_protocol: info.alpn_protocol,
            peer_certificate: info
                .peer_certificate
                .map(|peer| PeerCertificate { subject: peer.subject, fingerprint_sha256: peer.fingerprint_sha256 }),
        }))
    }

    fn drop(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// The linker finds the generated `write` and replaces it: with a name
    /// that drifted from the WIT (another package version, say) it fails.
    #[test]
    fn the_linker_replaces_the_generated_write() {
        let engine = crate::wasm::compiling_engine().unwrap();
        crate::wasm::linker(&engine).unwrap();
    }
}
