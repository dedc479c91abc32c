//! Sockets and connections, natively: binding listening sockets with
//! libevent's options, sockets inherited from systemd, the descriptor limit,
//! the accept loop, outbound connections, a connection and its state machine, the
//! output the host holds for connections and its limits, idle timeouts, TLS
//! configurations, and the life of a host (stopping, admitting, closing all).
//! Knows nothing of WebAssembly or WIT: the layers above drive it and turn
//! its errors into theirs.
pub mod accept;
pub(crate) mod activation;
mod budget;
pub mod connection;
pub mod descriptors;
pub mod dial;
pub mod endpoint;
pub mod idle;
pub mod lifecycle;
pub mod listener;
mod options;
pub mod socket;
pub mod stream;
pub mod tls;
pub mod unix;

pub use accept::{Acceptor, accept_loop};
pub use budget::OutputBudget;
pub use connection::{Connection, ConnectionError, OutputLimits, Ready};
pub use dial::{DialError, DialTarget};
pub use endpoint::{Credentials, Endpoint, UnixEndpoint};
pub use lifecycle::{Admission, Lifecycle, OpenConnections, OutboundRefused};
pub use listener::{AcceptState, Listener};
pub use options::ListenOptions;
pub use socket::{BindError, DEFAULT_BACKLOG, ListeningSocket, ZeroBacklog, bind_listener, listen_backlog};
pub use stream::Stream;
pub use unix::{UnixPermissions, UnixSocketFile, bind_unix_listener};
