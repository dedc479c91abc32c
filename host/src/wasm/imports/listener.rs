//! `evconn:listener/listener`: the guest's handles to listening sockets, and
//! `bind` for the addresses the operator allows.
use std::sync::Arc;

use wasmtime::component::Resource;

use super::types::error_code;
use crate::net::{
    BindError, Endpoint, Listener, ListeningSocket, UnixEndpoint, UnixPermissions, bind_listener, bind_unix_listener,
};
use crate::policy::unix_path;
use crate::wasm::bindings::evconn::listener::listener::{Host, HostListener};
use crate::wasm::bindings::{ErrorCode, ListenOptions, SocketAddress};
use crate::wasm::state::HostState;

/// A table entry naming a listener.
pub struct ListenerHandle {
    listener: Arc<Listener>,
    /// Whether dropping this handle frees the listener: true only for the
    /// handle `bind` returned.
    frees_on_drop: bool,
}

impl ListenerHandle {
    /// A handle that only names `listener`: the host's entry for borrows, or
    /// a handle to one of the operator's listeners.
    pub fn lent(listener: Arc<Listener>) -> Self {
        ListenerHandle { listener, frees_on_drop: false }
    }
}

impl HostState {
    fn listener(&self, handle: &Resource<ListenerHandle>) -> wasmtime::Result<&Arc<Listener>> {
        Ok(&self.table.get(handle)?.listener)
    }
}

impl Host for HostState {
    fn operator_listeners(&mut self) -> wasmtime::Result<Vec<Resource<ListenerHandle>>> {
        let Some(owner) = self.owner.upgrade() else { return Ok(Vec::new()) };
        owner
            .operator_listeners()
            .iter()
            .map(|listener| Ok(self.table.push(ListenerHandle::lent(listener.clone()))?))
            .collect()
    }
}

impl HostListener for HostState {
    fn bind(
        &mut self,
        address: SocketAddress,
        options: ListenOptions,
        backlog: i32,
    ) -> wasmtime::Result<Result<Resource<ListenerHandle>, ErrorCode>> {
        let options = options.into();
        let (bound, file) = match Endpoint::from(address) {
            Endpoint::Ip(address) => {
                if !self.policy.may_bind(address) {
                    tracing::warn!(%address, "guest may not bind this address (see --allow-bind)");
                    return Ok(Err(ErrorCode::AccessDenied));
                }
                (bind_listener(address, options, backlog).map(ListeningSocket::from), None)
            }
            Endpoint::Unix(UnixEndpoint { path, .. }) => {
                let Some(path) = path.filter(|path| unix_path(&path.to_string_lossy()).is_ok()) else {
                    return Ok(Err(ErrorCode::InvalidArgument));
                };
                if !self.policy.may_bind_unix(&path) {
                    tracing::warn!(path = %path.display(), "guest may not bind this path (see --allow-bind unix:PATH)");
                    return Ok(Err(ErrorCode::AccessDenied));
                }
                match bind_unix_listener(&path, options, backlog, UnixPermissions::default()) {
                    Ok((socket, file)) => (Ok(socket), Some(file)),
                    Err(e) => (Err(e), None),
                }
            }
        };
        let socket = match bound {
            Ok(socket) => socket,
            Err(BindError::ZeroBacklog(_)) => return Ok(Err(ErrorCode::InvalidArgument)),
            Err(e) => {
                tracing::warn!(error = %e, "guest bind failed");
                return Ok(Err(e.io_error().map_or(ErrorCode::Unknown, error_code)));
            }
        };
        let id = self.lifecycle.next_listener_id();
        let listener = match Listener::new(id, socket, options) {
            Ok(listener) => listener,
            Err(e) => return Ok(Err(error_code(&e))),
        };
        if let Some(file) = file {
            listener.keep_file(file);
        }
        let Some(owner) = self.owner.upgrade() else {
            // The owner is gone only while the host shuts down.
            return Ok(Err(ErrorCode::InvalidState));
        };
        tracing::info!(listener = id, address = %listener.local(), "guest bound a listener");
        owner.serve_bound_listener(listener.clone());
        let handle = ListenerHandle { listener, frees_on_drop: true };
        Ok(Ok(self.table.push(handle)?))
    }

    fn enable(&mut self, this: Resource<ListenerHandle>) -> wasmtime::Result<Result<(), ErrorCode>> {
        let enabled = self.listener(&this)?.enable();
        Ok(if enabled { Ok(()) } else { Err(ErrorCode::Closed) })
    }

    fn disable(&mut self, this: Resource<ListenerHandle>) -> wasmtime::Result<Result<(), ErrorCode>> {
        let disabled = self.listener(&this)?.disable();
        Ok(if disabled { Ok(()) } else { Err(ErrorCode::Closed) })
    }

    fn set_accept_callback(&mut self, this: Resource<ListenerHandle>, enabled: bool) -> wasmtime::Result<()> {
        self.listener(&this)?.set_deliver(enabled);
        Ok(())
    }

    fn fd(&mut self, this: Resource<ListenerHandle>) -> wasmtime::Result<i32> {
        Ok(self.listener(&this)?.fd())
    }

    fn local_address(&mut self, this: Resource<ListenerHandle>) -> wasmtime::Result<Result<SocketAddress, ErrorCode>> {
        let listener = self.listener(&this)?;
        Ok(if listener.is_closed() { Err(ErrorCode::Closed) } else { Ok(listener.local().clone().into()) })
    }

    fn id(&mut self, this: Resource<ListenerHandle>) -> wasmtime::Result<u64> {
        Ok(self.listener(&this)?.id())
    }

    fn drop(&mut self, this: Resource<ListenerHandle>) -> wasmtime::Result<()> {
        let handle = self.table.delete(this)?;
        if handle.frees_on_drop {
            handle.listener.free();
            if !handle.listener.is_closed() {
                self.lifecycle.keep_open(handle.listener);
            }
        }
        Ok(())
    }
}
