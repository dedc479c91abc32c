//! What the host counts by: why a connection ended, which callback ran,
//! which store call a guest made and how it ended, how a TLS handshake
//! ended.
//! These are the values of the `reason` and `callback` labels, and the
//! layers that act on them (the connection's state machine, the calls into
//! the guest) use the same types; and the label sets of the metrics.
use prometheus_client::encoding::EncodeLabelSet;

/// What ended a connection: the first close decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer sent end-of-stream, and the guest closed (or the host did).
    PeerClosed,
    /// Reading or writing failed (a reset, say), or the guest closed after
    /// being told so.
    Error,
    /// The guest closed it while the peer was still sending.
    GuestClosed,
    /// A callback returned an error.
    GuestError,
    /// The instance serving it trapped, or no instance could be made for it.
    Trap,
    /// It passed no bytes for `--idle-timeout`.
    IdleTimeout,
    /// The host was stopping and the shutdown timeout passed.
    Shutdown,
}

impl CloseReason {
    /// Every reason, in the order `Stats` counts them.
    pub const ALL: [CloseReason; 7] = [
        CloseReason::PeerClosed,
        CloseReason::Error,
        CloseReason::GuestClosed,
        CloseReason::GuestError,
        CloseReason::Trap,
        CloseReason::IdleTimeout,
        CloseReason::Shutdown,
    ];

    /// The `reason` label.
    pub fn name(self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Error => "error",
            CloseReason::GuestClosed => "guest_closed",
            CloseReason::GuestError => "guest_error",
            CloseReason::Trap => "trap",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

/// The guest's exports, as the `callback` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    /// `on-accept`.
    Accept,
    /// `on-data`.
    Data,
    /// `on-event`.
    Event,
    /// `on-accept-error`.
    AcceptError,
    /// `on-timer`.
    Timer,
    /// `on-drain`.
    Drain,
}

impl Callback {
    /// Every callback, in the order `Stats` keeps them.
    pub const ALL: [Callback; 6] =
        [Callback::Accept, Callback::Data, Callback::Event, Callback::AcceptError, Callback::Timer, Callback::Drain];

    /// The export's name in the WIT world.
    pub fn name(self) -> &'static str {
        match self {
            Callback::Accept => "on-accept",
            Callback::Data => "on-data",
            Callback::Event => "on-event",
            Callback::AcceptError => "on-accept-error",
            Callback::Timer => "on-timer",
            Callback::Drain => "on-drain",
        }
    }
}

/// The `wasi:keyvalue` calls, as the `op` label names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyvalueOp {
    /// `store.open`.
    Open,
    /// `bucket.get`.
    Get,
    /// `bucket.set`.
    Set,
    /// `bucket.delete`.
    Delete,
    /// `bucket.exists`.
    Exists,
    /// `bucket.list-keys`.
    ListKeys,
    /// `atomics.increment`.
    Increment,
    /// `batch.get-many`.
    GetMany,
    /// `batch.set-many`.
    SetMany,
    /// `batch.delete-many`.
    DeleteMany,
}

impl KeyvalueOp {
    /// Every call, in the order `Stats` keeps them.
    pub const ALL: [KeyvalueOp; 10] = [
        KeyvalueOp::Open,
        KeyvalueOp::Get,
        KeyvalueOp::Set,
        KeyvalueOp::Delete,
        KeyvalueOp::Exists,
        KeyvalueOp::ListKeys,
        KeyvalueOp::Increment,
        KeyvalueOp::GetMany,
        KeyvalueOp::SetMany,
        KeyvalueOp::DeleteMany,
    ];

    /// The function's name in the WIT.
    pub fn name(self) -> &'static str {
        match self {
            KeyvalueOp::Open => "open",
            KeyvalueOp::Get => "get",
            KeyvalueOp::Set => "set",
            KeyvalueOp::Delete => "delete",
            KeyvalueOp::Exists => "exists",
            KeyvalueOp::ListKeys => "list-keys",
            KeyvalueOp::Increment => "increment",
            KeyvalueOp::GetMany => "get-many",
            KeyvalueOp::SetMany => "set-many",
            KeyvalueOp::DeleteMany => "delete-many",
        }
    }
}

/// How a `wasi:keyvalue` call ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyvalueOutcome {
    /// It did what was asked.
    Ok,
    /// A bucket the operator did not allow (`access-denied`).
    Denied,
    /// The store refused it: past the budget, or not an integer.
    Refused,
    /// The store could not be reached or failed.
    Failed,
}

impl KeyvalueOutcome {
    /// Every outcome, in the order `Stats` keeps them.
    pub const ALL: [KeyvalueOutcome; 4] =
        [KeyvalueOutcome::Ok, KeyvalueOutcome::Denied, KeyvalueOutcome::Refused, KeyvalueOutcome::Failed];

    /// The `outcome` label.
    pub fn name(self) -> &'static str {
        match self {
            KeyvalueOutcome::Ok => "ok",
            KeyvalueOutcome::Denied => "denied",
            KeyvalueOutcome::Refused => "refused",
            KeyvalueOutcome::Failed => "failed",
        }
    }
}

/// How a TLS handshake ended, as the `outcome` label names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeOutcome {
    /// It finished: the connection goes on to the guest.
    Ok,
    /// The client or the host gave up on it: no common protocol, a
    /// certificate refused, a malformed message, the connection closed.
    Failed,
    /// It did not finish within `--tls-handshake-timeout`.
    Timeout,
}

impl HandshakeOutcome {
    /// Every outcome, in the order `Stats` keeps them.
    pub const ALL: [HandshakeOutcome; 3] = [HandshakeOutcome::Ok, HandshakeOutcome::Failed, HandshakeOutcome::Timeout];

    /// The `outcome` label.
    pub fn name(self) -> &'static str {
        match self {
            HandshakeOutcome::Ok => "ok",
            HandshakeOutcome::Failed => "failed",
            HandshakeOutcome::Timeout => "timeout",
        }
    }
}

/// The labels of a metric counted per component.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ComponentLabels {
    pub(crate) component: String,
}

/// The labels of `evconn_connections_closed_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct ClosedLabels {
    pub(crate) component: String,
    pub(crate) reason: &'static str,
}

/// The labels of `evconn_accept_errors_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct AcceptErrorLabels {
    pub(crate) component: String,
    pub(crate) errno: String,
}

/// The labels of `evconn_callback_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CallbackLabels {
    pub(crate) component: String,
    pub(crate) callback: &'static str,
}

/// The labels of `evconn_keyvalue_operations_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyvalueLabels {
    pub(crate) component: String,
    pub(crate) op: &'static str,
    pub(crate) outcome: &'static str,
}

/// The labels of `evconn_keyvalue_duration_seconds`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct KeyvalueOpLabels {
    pub(crate) component: String,
    pub(crate) op: &'static str,
}

/// The labels of `evconn_tls_handshakes_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HandshakeLabels {
    pub(crate) component: String,
    pub(crate) outcome: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` lists each variant once, at its own index: `Stats` counts by it.
    #[test]
    fn every_label_sits_at_its_own_index() {
        for (index, reason) in CloseReason::ALL.into_iter().enumerate() {
            assert_eq!(reason as usize, index, "{}", reason.name());
        }
        for (index, callback) in Callback::ALL.into_iter().enumerate() {
            assert_eq!(callback as usize, index, "{}", callback.name());
        }
        for (index, op) in KeyvalueOp::ALL.into_iter().enumerate() {
            assert_eq!(op as usize, index, "{}", op.name());
        }
        for (index, outcome) in KeyvalueOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index, "{}", outcome.name());
        }
        for (index, outcome) in HandshakeOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, index, "{}", outcome.name());
        }
    }
}
