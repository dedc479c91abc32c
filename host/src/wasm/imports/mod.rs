//! The host side of the WIT imports: what a guest can ask of the host.
mod connection;
mod keyvalue;
mod listener;
mod outbound;
mod reactor;
mod timers;
mod types;

pub use connection::{ConnectionHandle, add_write_from_guest_memory};
pub use keyvalue::BucketHandle;
pub use listener::ListenerHandle;
pub use types::{accept_error, dial_error_code, error_code};
