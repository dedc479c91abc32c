//! The `host` binary: parses flags, sets up logging, runs the host.
use std::process::ExitCode;

use clap::Parser;
use evconn_host::cli::{self, Args};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let args = Args::parse();
    let mut filter = EnvFilter::builder()
        .with_default_directive(args.log_level().into())
        .from_env_lossy()
        // Cranelift and wasmtime are chatty at debug; their logs are not ours.
        .add_directive("cranelift=warn".parse().expect("a valid directive"))
        .add_directive("wasmtime=warn".parse().expect("a valid directive"));
    if args.show_guest_output() && std::env::var_os("RUST_LOG").is_none() {
        filter = filter.add_directive("guest=info".parse().expect("a valid directive"));
        // Compiling a Python or JavaScript component takes seconds: say so,
        // or the first start looks hung.
        filter = filter.add_directive("compile=info".parse().expect("a valid directive"));
    }
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi).init();

    match cli::run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
