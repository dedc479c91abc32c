//! The benchmark's echo guest that owns its socket (bench/socket-echo):
//! built with the other guests and run as `wasmtime run -S inherit-network`
//! runs it, on this build's wasmtime and wasmtime-wasi (the same version as
//! the CLI the benchmark installs, which takes minutes to build and which
//! the tests therefore do without). It binds, accepts and echoes by itself.
use crate::support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::sync::Command;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

/// How long the guest may take to compile, start and bind (a debug build
/// compiles slowly), and to stop once told to.
const PATIENCE: Duration = Duration::from_secs(60);

struct State {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.ctx, table: &mut self.table }
    }
}

/// The guest running on a thread of its own; dropping it stops the guest.
struct Running {
    address: SocketAddr,
    engine: Engine,
    /// What `run` returned, or why it did not.
    ended: mpsc::Receiver<String>,
}

impl Running {
    /// Starts the guest listening on a free loopback port, as the benchmark
    /// does (`wasmtime run -S inherit-network socket-echo.wasm ADDR`), and
    /// waits for the address it prints.
    fn start() -> Running {
        let mut config = Config::new();
        // The only way to stop a guest that waits in its accept loop for
        // ever: it traps at the first epoch check after the epoch moves.
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let component = Component::from_file(&engine, support::guest("socket-echo")).unwrap();
        let mut linker = Linker::<State>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
        let stderr = MemoryOutputPipe::new(64 << 10);
        let mut ctx = WasiCtx::builder();
        ctx.args(&["socket-echo", "127.0.0.1:0"]).inherit_network().allow_tcp(true).stderr(stderr.clone());
        let mut store = Store::new(&engine, State { ctx: ctx.build(), table: ResourceTable::new() });
        store.set_epoch_deadline(1);
        let (done, ended) = mpsc::channel();
        std::thread::spawn(move || {
            let outcome = Command::instantiate(&mut store, &component, &linker)
                .and_then(|command| command.wasi_cli_run().call_run(&mut store));
            let _ = done.send(format!("{outcome:?}"));
        });
        let deadline = Instant::now() + PATIENCE;
        let address = loop {
            let printed = String::from_utf8_lossy(&stderr.contents()).into_owned();
            if let Some(address) = printed.lines().find_map(|l| l.strip_prefix("socket-echo: listening on ")) {
                break address.parse().unwrap();
            }
            if let Ok(outcome) = ended.try_recv() {
                panic!("the guest ended before it listened: {outcome}; it printed: {printed}");
            }
            assert!(Instant::now() < deadline, "the guest did not listen within {PATIENCE:?}; it printed: {printed}");
            std::thread::sleep(Duration::from_millis(10));
        };
        Running { address, engine, ended }
    }

    fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.address).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        stream
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.engine.increment_epoch();
        // The guest waits in `poll` until a connection wakes it; then it
        // runs, and traps at its first epoch check.
        let _ = TcpStream::connect(self.address);
        let outcome = self.ended.recv_timeout(PATIENCE);
        if !std::thread::panicking() {
            let outcome = outcome.expect("the guest stops once the epoch moves");
            assert!(outcome.contains("interrupt"), "stopped by the epoch, not by an error of its own: {outcome}");
        }
    }
}

fn echo(stream: &mut TcpStream, message: &[u8]) {
    stream.write_all(message).unwrap();
    let mut back = vec![0u8; message.len()];
    stream.read_exact(&mut back).unwrap();
    assert!(back == message, "the echo differs from what was sent");
}

/// A small message and 1 MiB, more than the guest's 16 KiB buffer, come
/// back byte for byte.
#[test]
fn echoes_what_it_is_sent() {
    let guest = Running::start();
    let mut stream = guest.connect();
    echo(&mut stream, b"hello\n");
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
    // Written from a thread while this one reads: the guest writes back as
    // it reads, and neither side's buffers hold 1 MiB.
    let mut writer = stream.try_clone().unwrap();
    let sent = big.clone();
    let writing = std::thread::spawn(move || writer.write_all(&sent).unwrap());
    let mut back = vec![0u8; big.len()];
    stream.read_exact(&mut back).unwrap();
    writing.join().unwrap();
    assert!(back == big, "1 MiB came back changed");
}

/// Each connection is served by a task of its own: a connection opened
/// later is answered while an earlier one waits in the middle of nothing.
#[test]
fn serves_connections_at_once() {
    let guest = Running::start();
    let mut first = guest.connect();
    let mut streams: Vec<TcpStream> = (0..10).map(|_| guest.connect()).collect();
    for (i, stream) in streams.iter_mut().enumerate().rev() {
        echo(stream, format!("connection {i}\n").as_bytes());
    }
    echo(&mut first, b"still here\n");
}
