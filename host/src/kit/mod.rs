//! The component test kit: run a component in a host in this process and
//! hold conversations with it over loopback TCP, from Rust or from
//! line-based scripts (`host test`). `docs/test-kit.md` describes both.
//!
//! ```no_run
//! use evconn_host::kit::{Expect, Host};
//!
//! let host = Host::start("echo.wasm")?;
//! let mut a = host.connect()?;
//! a.send(b"Hello\n")?;
//! a.expect(&Expect::exact("Hello\n"))?;
//! a.shutdown_write()?;
//! a.expect(&Expect::Closed)?;
//! host.stop()?;
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! # Layout
//! - [`host`]: a host on a thread of its own, serving on port 0.
//! - [`client`]: a test connection: send, expect within a deadline.
//! - [`expect`]: expectations, and the failures reports show.
//! - [`script`]: the `.evt` script format.
//! - [`run`]: runs scripts and reports each step.
//! - `escape`: bytes quoted as scripts write them.
//! - `compiled`: components compiled once per process.
pub mod client;
pub mod expect;
pub mod host;
pub mod run;
pub mod script;

mod compiled;
mod escape;

pub use client::{Client, DEFAULT_TIMEOUT};
pub use escape::quote;
pub use expect::{Expect, Failure, FailureKind};
pub use host::{DEFAULT_MAX_CONNECTIONS, Host, HostBuilder};
