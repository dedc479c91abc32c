//! The `host` command line: flags, their checks, and the program that binds
//! the operator's listeners and serves until told to stop.
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgAction, Parser};

use crate::bindings::ListenOptions;
use crate::server::Server;
use crate::socket::{DEFAULT_BACKLOG, OPTION_NAMES, bind_listener, option_by_name};

/// Runs TCP connection handlers written as WebAssembly components.
///
/// The host accepts connections on the --listen addresses and calls the
/// component's callbacks (world evconn:listener/handler) for each one, as
/// libevent's evconnlistener calls C callbacks. The guest gets WASI preview 2
/// with nothing granted: no files, no environment, no sockets of its own
/// beyond the addresses --allow-bind permits.
#[derive(Debug, Parser)]
#[command(name = "host", version)]
pub struct Args {
    /// The handler: a WebAssembly component of the world
    /// evconn:listener/handler@0.1.0.
    #[arg(long, value_name = "FILE")]
    pub component: PathBuf,

    /// An address to listen on; repeat for several. IPv6 goes in brackets:
    /// [::1]:9876. The port must be in 1..65535.
    #[arg(long = "listen", value_name = "ADDR", default_value = "0.0.0.0:9876", value_parser = parse_listen_address)]
    pub listen: Vec<SocketAddr>,

    /// A listener option for every --listen socket; repeat for several:
    /// leave-sockets-blocking, close-on-free, close-on-exec, reuseable,
    /// threadsafe, disabled, deferred-accept, reuseable-port, bind-ipv6-only.
    /// Default: reuseable and close-on-free, as in libevent's example.
    #[arg(long = "listen-option", value_name = "NAME", value_parser = parse_listen_option)]
    pub listen_options: Vec<ListenOptions>,

    /// The kernel backlog of --listen sockets: negative picks the default
    /// (128), positive is passed to listen(). 0 is refused: it means a socket
    /// that already listens.
    #[arg(long, value_name = "N", default_value_t = -1, allow_negative_numbers = true)]
    pub backlog: i32,

    /// An address the guest may bind with listener.bind; repeat for several.
    /// Port 0 allows every port of that IP. Default: none.
    #[arg(long = "allow-bind", value_name = "ADDR")]
    pub allow_bind: Vec<SocketAddr>,

    /// Seconds to let open connections send what was written to them when
    /// the host stops.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub shutdown_timeout: u64,

    /// Log more: -v for each connection, -vv for everything. RUST_LOG, when
    /// set, takes precedence.
    #[arg(short, long, action = ArgAction::Count)]
    pub verbose: u8,

    /// Log less: -q for warnings and errors only, -qq for errors only.
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "verbose")]
    pub quiet: u8,
}

impl Args {
    /// The log level the flags ask for.
    pub fn log_level(&self) -> tracing::Level {
        match (self.verbose, self.quiet) {
            (0, 0) => tracing::Level::INFO,
            (1, _) => tracing::Level::DEBUG,
            (_, 0) => tracing::Level::TRACE,
            (_, 1) => tracing::Level::WARN,
            _ => tracing::Level::ERROR,
        }
    }

    /// The options for --listen sockets.
    pub fn listen_options(&self) -> ListenOptions {
        if self.listen_options.is_empty() {
            ListenOptions::REUSEABLE | ListenOptions::CLOSE_ON_FREE
        } else {
            self.listen_options.iter().fold(ListenOptions::empty(), |all, o| all | *o)
        }
    }

    /// Checks what clap cannot check alone.
    fn validate(&self) -> anyhow::Result<()> {
        if self.backlog == 0 {
            anyhow::bail!(
                "--backlog 0 means a socket that already listens, but --listen binds new ones: \
                 give a positive backlog, or a negative one for the default ({DEFAULT_BACKLOG})"
            );
        }
        Ok(())
    }
}

/// Parses `HOST:PORT`, refusing a port outside 1..65535 as libevent's example
/// does ("Invalid port").
pub fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("expected HOST:PORT, such as 0.0.0.0:9876 or [::1]:9876, not {text:?}"))?;
    let port: i64 = port.parse().map_err(|_| format!("Invalid port: {port:?} is not a number"))?;
    if !(1..=65535).contains(&port) {
        return Err(format!("Invalid port: {port} (must be 1..65535)"));
    }
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip: IpAddr = host
        .parse()
        .map_err(|_| format!("{host:?} is not an IP address (IPv6 goes in brackets: [::1]:9876)"))?;
    Ok(SocketAddr::new(ip, port as u16))
}

fn parse_listen_option(name: &str) -> Result<ListenOptions, String> {
    option_by_name(name).ok_or_else(|| {
        let names: Vec<_> = OPTION_NAMES.iter().map(|(n, _)| *n).collect();
        format!("unknown listener option {name:?}; known: {}", names.join(", "))
    })
}

/// Runs the host: loads the component, binds the listeners, serves until
/// SIGINT, SIGTERM or the guest's `loop-exit`.
pub fn run(args: Args) -> anyhow::Result<()> {
    args.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the reactor")?;
    let engine = crate::component::engine()?;
    let component = crate::component::load(&engine, &args.component)?;

    let options = args.listen_options();
    // Binding registers nothing with the reactor, but converting to tokio's
    // listener later needs the runtime entered.
    let _entered = runtime.enter();
    let listeners = args
        .listen
        .iter()
        .map(|address| Ok((bind_listener(*address, options, args.backlog)?, options)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let server = Server {
        component,
        component_name: crate::component::name(&args.component),
        listeners,
        allow_bind: args.allow_bind,
        shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
    };
    runtime.block_on(server.run(stop_signal()))
}

/// Completes on SIGINT or SIGTERM.
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT"),
        _ = terminate.recv() => tracing::info!("SIGTERM"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ports outside 1..65535 are refused with libevent's "Invalid port".
    #[test]
    fn refuses_ports_outside_range() {
        for bad in ["0.0.0.0:0", "0.0.0.0:65536", "0.0.0.0:-1", "[::1]:70000"] {
            let error = parse_listen_address(bad).unwrap_err();
            assert!(error.starts_with("Invalid port"), "{bad}: {error}");
        }
        assert_eq!(parse_listen_address("[::1]:1").unwrap(), "[::1]:1".parse().unwrap());
        assert_eq!(parse_listen_address("127.0.0.1:65535").unwrap(), "127.0.0.1:65535".parse().unwrap());
    }
}
