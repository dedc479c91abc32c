//! `evconn:listener/connection`: the guest's handles to accepted connections.
use std::sync::Arc;

use wasmtime::component::Resource;

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
