//! `evconn:listener/connection`: the guest's handles to accepted connections.
use std::sync::Arc;

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, WasmList};

use crate::bindings::evconn::listener::connection::{Host, HostConnection};
use crate::bindings::{ErrorCode, IpSocketAddress};
use crate::connection::Connection;
use crate::state::HostState;

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
const WRITE_IMPORT: (&str, &str) = ("evconn:listener/connection@0.1.0", "[method]connection.write");

/// Defines `write` again over the generated binding, which copies the list
/// out of the guest's memory into a `Vec` before the call: this one hands
/// the socket the guest's memory itself, and copies only what the socket
/// does not take at once. For an echo that is one copy of every byte fewer.
pub fn add_write_from_guest_memory(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let defined = linker.instance(WRITE_IMPORT.0)?.func_wrap(
        WRITE_IMPORT.1,
        |store: StoreContextMut<'_, HostState>, (this, data): (Resource<ConnectionHandle>, WasmList<u8>)| {
            let conn = store.data().conn(&this)?;
            // Lifting checked that the list lies within the guest's memory.
            Ok((conn.write(data.as_le_slice(&store)),))
        },
    );
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
    fn write(
        &mut self,
        this: Resource<ConnectionHandle>,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        Ok(self.conn(&this)?.write(&data))
    }

    fn shutdown_write(
        &mut self,
        this: Resource<ConnectionHandle>,
    ) -> wasmtime::Result<Result<(), ErrorCode>> {
        Ok(self.conn(&this)?.shutdown_write())
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

    fn peer_address(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<IpSocketAddress> {
        Ok(self.conn(&this)?.peer().into())
    }

    fn local_address(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<IpSocketAddress> {
        Ok(self.conn(&this)?.local().into())
    }

    fn drop(&mut self, this: Resource<ConnectionHandle>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// `WRITE_IMPORT` names the interface of the WIT package as it is: with
    /// another version the replacement would be defined beside the generated
    /// `write`, not over it, and never called.
    #[test]
    fn the_write_import_names_the_current_package_version() {
        let wit = include_str!("../../../wit/connection.wit");
        let package = wit.lines().find_map(|line| line.strip_prefix("package ")).expect("a package line");
        let (name, version) = package.trim_end_matches(';').split_once('@').expect("a versioned package");
        assert_eq!(super::WRITE_IMPORT.0, format!("{name}/connection@{version}"));
    }
}
