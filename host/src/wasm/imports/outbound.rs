//! `evconn:listener/outbound`: connections the guest opens, checked against
//! `--allow-connect` and the outbound limits before anything is dialed.
use std::net::SocketAddr;
use std::sync::Arc;

use wasmtime::component::Resource;

use super::ConnectionHandle;
use crate::net::{Connection, DialTarget, OutboundRefused};
use crate::policy::valid_name;
use crate::wasm::bindings::evconn::listener::outbound::Host;
use crate::wasm::bindings::{ErrorCode, IpSocketAddress};
use crate::wasm::context::Dial;
use crate::wasm::state::HostState;

impl Host for HostState {
    fn connect(&mut self, address: IpSocketAddress) -> wasmtime::Result<Result<Resource<ConnectionHandle>, ErrorCode>> {
        let address = SocketAddr::from(address);
        if address.port() == 0 || address.ip().is_unspecified() {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        if !self.policy.may_connect(address) {
            tracing::warn!(component = %self.component, %address, "guest may not connect here (see --allow-connect)");
            self.stats.counts.outbound_denied.inc();
            return Ok(Err(ErrorCode::AccessDenied));
        }
        self.open_outbound(DialTarget::Address(address))
    }

    fn connect_name(
        &mut self,
        name: String,
        port: u16,
    ) -> wasmtime::Result<Result<Resource<ConnectionHandle>, ErrorCode>> {
        // A name written as an address is that address, under its rules.
        if let Ok(ip) = name.parse::<std::net::IpAddr>() {
            return self.connect(SocketAddr::new(ip, port).into());
        }
        if port == 0 || !valid_name(&name) {
            return Ok(Err(ErrorCode::InvalidArgument));
        }
        if !self.policy.may_connect_name(&name, port) {
            tracing::warn!(component = %self.component, %name, port, "guest may not connect here (see --allow-connect)");
            self.stats.counts.outbound_denied.inc();
            return Ok(Err(ErrorCode::AccessDenied));
        }
        self.open_outbound(DialTarget::Name(name, port))
    }
}

impl HostState {
    /// Admits an outbound connection under the host's and the instance's
    /// limits, hands the guest its handle and has the owner dial it.
    fn open_outbound(&mut self, target: DialTarget) -> wasmtime::Result<Result<Resource<ConnectionHandle>, ErrorCode>> {
        let admission = match self.lifecycle.admit_outbound() {
            Ok(admission) => admission,
            Err(refused) => {
                self.stats.counts.outbound_denied.inc();
                return Ok(Err(match refused {
                    OutboundRefused::Stopping => ErrorCode::Closed,
                    OutboundRefused::LimitReached => ErrorCode::LimitReached,
                }));
            }
        };
        let Ok(instance_permit) = self.outbound_permits.clone().try_acquire_owned() else {
            self.stats.counts.outbound_denied.inc();
            return Ok(Err(ErrorCode::LimitReached));
        };
        // Without an owner the worker is gone and nothing would serve it.
        let Some(owner) = self.owner.upgrade() else { return Ok(Err(ErrorCode::Closed)) };
        let conn = Arc::new(Connection::connecting(
            self.lifecycle.next_connection_id(),
            self.output.clone(),
            self.stats.traffic(),
        ));
        let handle = self.adopt_connection(&conn)?;
        tracing::debug!(conn = conn.id(), ?target, component = %self.component, "connecting");
        owner.serve_outbound(conn, Dial { target, generation: self.generation, admission, instance_permit });
        Ok(Ok(handle))
    }
}
