//! The `host` command line: flags and subcommands ([`Args`]), their checks,
//! the config file, and the program that runs them.
mod args;
mod config;
mod parse;
mod plan;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Notify;

pub use self::args::{Args, CodeArgs, Command, HostFlags, LimitArgs, TestArgs};
pub use self::parse::parse_listen_address;
pub use self::plan::{ListenerPlan, Plan};
pub use crate::base::units::{parse_duration, parse_size};

/// Runs the command line: serves, or runs a subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    match &args.command {
        Some(Command::Compile { component, output }) => compile(component, output),
        Some(Command::Test(test)) => run_tests(test),
        None => serve(args),
    }
}

/// `host test`: runs the scripts, reports to standard output, and fails if
/// a step failed.
fn run_tests(args: &TestArgs) -> anyhow::Result<()> {
    let mut limits = args.limits.limits()?;
    if args.limits.max_connections.is_none() {
        limits.max_connections = limits.max_connections.min(crate::kit::DEFAULT_MAX_CONNECTIONS);
    }
    let mut host = crate::kit::Host::builder(&args.component)
        .isolation(args.limits.isolation)
        .limits(|l| *l = limits)
        // Scripts end by dropping their connections; nothing to wait for.
        .shutdown_timeout(Duration::from_secs(1));
    if let Some(cache) = args.cache.cache()? {
        host = host.code_cache(cache);
    }
    host = host.allow_precompiled(args.cache.allow_precompiled);
    for rule in &args.allow_connect {
        host = host.allow_connect(rule.clone());
    }
    for (key, value) in &args.env {
        host = host.env(key, value);
    }
    host = host.keyvalue(args.keyvalue.clone());
    for bucket in &args.allow_bucket {
        host = host.allow_bucket(bucket);
    }
    let tally = crate::kit::run::run_scripts(&host, &args.scripts, args.timeout, &mut std::io::stdout().lock())?;
    if tally.failed > 0 {
        anyhow::bail!("{} of {} steps failed", tally.failed, tally.passed + tally.failed + tally.skipped);
    }
    Ok(())
}

/// `host compile`: writes the compiled form of a component.
fn compile(component: &Path, output: &Path) -> anyhow::Result<()> {
    let engine = crate::wasm::compiling_engine()?;
    let compiled = crate::wasm::precompile(&engine, component)?;
    std::fs::write(output, compiled).with_context(|| format!("cannot write {}", output.display()))?;
    tracing::info!(component = %component.display(), output = %output.display(), "compiled");
    Ok(())
}

/// Serves what the flags or the config file describe until SIGINT, SIGTERM
/// or the guest's `loop-exit`; SIGHUP reloads the components.
fn serve(args: Args) -> anyhow::Result<()> {
    let plan = match &args.config {
        Some(path) => config::read(path)?,
        None => Plan::from_args(&args)?,
    };
    // SAFETY: no thread but this one runs yet; the runtimes start below.
    let inherited = unsafe { crate::net::activation::take_inherited() }?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the control reactor")?;
    let reload_requests = Arc::new(Notify::new());
    let mut server = plan.prepare(inherited, reload_requests.clone())?;
    if let Some(path) = args.config.clone() {
        // SIGHUP reads the listeners' `env` tables again.
        server.reload.environments = Some(Arc::new(move || {
            let plan = config::read(&path)?;
            Ok(plan.listeners.into_iter().map(|listener| (listener.component, listener.env)).collect())
        }));
    }
    runtime.block_on(async {
        watch_sighup(reload_requests)?;
        server.run(stop_signal()).await
    })
}

/// Turns every SIGHUP into a reload request.
fn watch_sighup(requests: Arc<Notify>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            requests.notify_one();
        }
    });
    Ok(())
}

/// Completes on SIGINT or SIGTERM. The signals are watched from the call
/// on, not from the first poll: the listeners accept before the server
/// polls this, and a signal then must drain them, not kill the process.
fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    until_stop_signal(signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
}

async fn until_stop_signal(
    interrupt: std::io::Result<tokio::signal::unix::Signal>,
    terminate: std::io::Result<tokio::signal::unix::Signal>,
) {
    // Both streams are registered before the first signal, so a second one
    // that follows at once is not missed.
    let (mut interrupt, mut terminate) = match (interrupt, terminate) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(error = %e, "cannot watch SIGINT and SIGTERM; stop the host with SIGKILL");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = interrupt.recv() => tracing::info!("SIGINT: stopping; a second signal exits at once"),
        _ = terminate.recv() => tracing::info!("SIGTERM: stopping; a second signal exits at once"),
    }
    tokio::spawn(async move {
        let signal = tokio::select! {
            _ = interrupt.recv() => libc::SIGINT,
            _ = terminate.recv() => libc::SIGTERM,
        };
        tracing::warn!("second signal: exiting at once");
        std::process::exit(128 + signal);
    });
}
