//! `bench`: runs evconn's host, native echo servers and an echo guest that
//! owns its socket side by side on loopback, generates the load, and writes
//! the report.
mod certificate;
mod cli;
mod clock;
mod figures;
mod floor;
mod load;
mod measure;
mod procfs;
mod proxies;
mod report;
mod runner;
mod servers;
mod startup;
mod stats;
mod system;
mod tls_client;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;

use crate::runner::Pins;
use crate::servers::Programs;

fn main() -> ExitCode {
    match run(cli::Args::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Ok(false): the report was written but a server failed or a figure is
/// missing.
fn run(args: cli::Args) -> Result<bool, String> {
    let started = Instant::now();
    let mut plan = args.plan()?;
    let programs = Programs {
        host: args.host.clone(),
        echo_wasm: args.echo_wasm.clone(),
        native_echo: args.native_echo.clone(),
        wasmtime_floor: args.wasmtime_floor.clone(),
        libevent_echo: match &args.libevent_missing {
            Some(reason) => Err(reason.clone()),
            None => Ok(args.libevent_echo.clone()),
        },
        wasmtime_cli: match &args.guest_socket_missing {
            Some(reason) => Err(reason.clone()),
            None => Ok(args.wasmtime.clone()),
        },
        socket_echo: args.socket_echo_wasm.clone(),
        proxy_wasm: args.proxy_wasm.clone(),
        native_proxy: args.native_proxy.clone(),
        haproxy: match &args.haproxy_missing {
            Some(reason) => Err(reason.clone()),
            None => Ok(args.haproxy.clone()),
        },
        nginx: match &args.nginx_missing {
            Some(reason) => Err(reason.clone()),
            None => Ok(args.nginx.clone()),
        },
        nginx_stream_module: args.nginx_stream_module.clone(),
        kv_wasm: args.kv_wasm.clone(),
        redis_server: match &args.redis_server_missing {
            Some(reason) => Err(reason.clone()),
            None => Ok(args.redis_server.clone()),
        },
        redis_benchmark: args.redis_benchmark.clone(),
        native_tls_echo: args.native_tls_echo.clone(),
        tls: None,
        configs: PathBuf::new(),
        backend: None,
    };
    programs.check(args.suite)?;
    let out = args.out_dir();
    let logs = out.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| format!("{}: {e}", logs.display()))?;
    // The tls suite's certificate is the run's own, made now and removed
    // with its key when the run ends.
    let certificate_dir = out.join("tls");
    let tls = match plan.suite {
        servers::Suite::Tls => {
            let certificate = certificate::RunCertificate::make(&certificate_dir)?;
            let client = tls_client::config(&certificate.der)?;
            Some(servers::Tls { certificate, client })
        }
        _ => None,
    };
    let programs = Programs { configs: out.join("configs"), tls, ..programs };

    // The server gets the first CPU, the load the second; the latency client
    // shares the server's (see load/latency.rs). Threads inherit the pin of
    // the thread that starts them, so pinning now covers the runtime.
    let cpus = system::allowed_cpus();
    let pins = if cpus.len() >= 2 {
        Pins { server: Some(cpus[0]), load: Some(cpus[1]), latency: Some(cpus[0]) }
    } else {
        Pins { server: None, load: None, latency: None }
    };
    if let Some(cpu) = pins.load {
        system::pin_current_thread(cpu).map_err(|e| format!("pinning to CPU {cpu}: {e}"))?;
    }
    // Each idle connection costs a descriptor here and one in the server,
    // which inherits this limit; leave room for everything else.
    let nofile = system::raise_nofile().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    // A proxy holds two descriptors per connection, the client end and
    // the backend's.
    let per_connection = match plan.suite {
        servers::Suite::Echo | servers::Suite::Kv => 1,
        servers::Suite::Proxy | servers::Suite::Tls => 2,
    };
    let most = (nofile as usize).saturating_sub(100) / per_connection;
    if plan.idle_connections > most {
        eprintln!("bench: RLIMIT_NOFILE is {nofile}: holding {most} idle connections, not {}", plan.idle_connections);
        plan.idle_connections = most;
    }

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the load generator's runtime: {e}"))?;
    eprintln!("bench: writing to {}", out.display());
    let results = runner::run(&programs, &plan, pins, &logs, &out.join("start"), &runtime);
    if programs.tls.is_some()
        && let Err(e) = std::fs::remove_dir_all(&certificate_dir)
    {
        eprintln!("bench: cannot remove {}: {e}", certificate_dir.display());
    }
    let context = report::Context {
        plan: &plan,
        pins,
        programs: &programs,
        cpus: cpus.len(),
        seconds_taken: started.elapsed().as_secs_f64(),
    };
    let report = report::build(results, &context);
    let markdown = report::write(&report, &out)?;
    // The smoke run keeps CI's log short: its figures mean nothing, and
    // failures were printed as they happened.
    if !plan.smoke {
        println!("{markdown}");
    }
    println!(
        "Written: {0}/report.md, {0}/chart.svg, {0}/results.json ({1:.0} s)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    if !report.complete {
        eprintln!("bench: incomplete: a server failed or a figure is missing (see Failures above)");
    }
    Ok(report.complete)
}
