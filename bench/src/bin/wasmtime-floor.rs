//! The floor under the host's figures: what wasmtime itself costs to run
//! the echo guest, on the host's own engine, with no host around it.
//!
//! It calls `on-data` with 64 bytes, as one ping-pong round trip does; the
//! guest writes them back through `write`, which here only looks at them.
//! Every other import traps, and the store holds nothing: no WASI context,
//! no resource table, no reactor. It prints one JSON object:
//! - CPU per call, with `call_async` (on a fiber, as a host that makes long
//!   callbacks yield must call) and with `call` (no fiber, no yield);
//! - resident memory per instance under the per-connection model's pooling
//!   allocator, each instance called once (as each idle connection of the
//!   benchmark is), with `call_async` and with `call`.
//!
//! No host of this guest on this wasmtime can do better: the benchmark sets
//! these figures beside the native servers' to show how close to the
//! targets any wasmtime host could come, and how much the host adds.
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use evconn_host::policy::Limits;
use evconn_host::wasm::{ErrorCode, Isolation};
use serde::Serialize;
use wasmtime::component::{Component, InstancePre, Linker, Resource, ResourceType, TypedFunc, WasmList};
use wasmtime::{Engine, Store, StoreContextMut, UpdateDeadline};

/// Times the echo guest's `on-data` call and sizes its instances, with
/// wasmtime alone.
#[derive(Debug, Parser)]
#[command(name = "wasmtime-floor")]
struct Args {
    /// The echo guest component.
    component: PathBuf,

    /// Timed calls of each kind (after a tenth as many to warm up).
    #[arg(long, default_value_t = 200_000)]
    calls: u32,

    /// Instances held at once for the memory figure.
    #[arg(long, default_value_t = 1_000)]
    instances: usize,
}

/// The figures, as the benchmark reads them.
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
struct Floor {
    call_async_us: f64,
    call_sync_us: f64,
    instance_kib: f64,
    instance_sync_kib: f64,
    calls: u32,
    instances: usize,
}

/// The host's side of a `connection`: nothing.
struct Conn;

/// `on-data(borrow<connection>, list<u8>) -> result<_, string>`.
type OnData = TypedFunc<(Resource<Conn>, &'static [u8]), (Result<(), String>,)>;

const CONNECTION: &str = "evconn:listener/connection@0.2.0";
const CALLBACKS: &str = "evconn:listener/callbacks@0.2.0";

/// One ping-pong message.
static MESSAGE: [u8; 64] = [b'x'; 64];

fn main() {
    if let Err(e) = run(Args::parse()) {
        eprintln!("wasmtime-floor: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let warmup = (args.calls / 10).max(1);
    let shared = evconn_host::wasm::engine(Isolation::Shared, &Limits::default())?;
    let pre = prepare(&shared, &args.component)?;

    let (mut store, on_data) = instance_sync(&pre)?;
    call_sync(&mut store, on_data, warmup)?;
    let started = cpu_now();
    call_sync(&mut store, on_data, args.calls)?;
    let sync = cpu_now() - started;

    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let asynchronous = runtime.block_on(async {
        let (mut store, on_data) = instance_async(&pre).await?;
        call_async(&mut store, on_data, warmup).await?;
        let started = cpu_now();
        call_async(&mut store, on_data, args.calls).await?;
        anyhow::Ok(cpu_now() - started)
    })?;

    let mut held = Vec::new();
    let instance_kib = instance_memory(&args, &runtime, Calls::Async, &mut held)?;
    let instance_sync_kib = instance_memory(&args, &runtime, Calls::Sync, &mut held)?;
    let per_call = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(args.calls);
    let floor = Floor {
        call_async_us: per_call(asynchronous),
        call_sync_us: per_call(sync),
        instance_kib,
        instance_sync_kib,
        calls: args.calls,
        instances: args.instances,
    };
    println!("{}", serde_json::to_string(&floor)?);
    Ok(())
}

/// The guest compiled on `engine` and linked against a `write` that does
/// nothing; every other import traps.
fn prepare(engine: &Engine, file: &Path) -> Result<InstancePre<()>> {
    let component =
        Component::from_file(engine, file).map_err(|e| anyhow::anyhow!("cannot compile {}: {e:#}", file.display()))?;
    let mut linker = Linker::new(engine);
    let mut connection = linker.instance(CONNECTION)?;
    connection.resource("connection", ResourceType::host::<Conn>(), |_, _| Ok(()))?;
    connection.func_wrap(
        "[method]connection.write",
        |store: StoreContextMut<'_, ()>, (_conn, data): (Resource<Conn>, WasmList<u8>)| {
            black_box(data.as_le_slice(&store));
            Ok((Ok::<(), ErrorCode>(()),))
        },
    )?;
    linker.define_unknown_imports_as_traps(&component)?;
    Ok(linker.instantiate_pre(&component)?)
}

/// A store as the host makes one: an epoch deadline re-armed at each tick
/// (the host's ticker runs for this engine too), nothing else.
fn store(engine: &Engine) -> Store<()> {
    let mut store = Store::new(engine, ());
    store.epoch_deadline_callback(|_| Ok(UpdateDeadline::Continue(1)));
    store.set_epoch_deadline(1);
    store
}

fn on_data(store: &mut Store<()>, instance: &wasmtime::component::Instance) -> Result<OnData> {
    let callbacks = instance.get_export_index(&mut *store, None, CALLBACKS).context("no callbacks export")?;
    let index = instance.get_export_index(&mut *store, Some(&callbacks), "on-data").context("no on-data export")?;
    Ok(instance.get_typed_func(&mut *store, index)?)
}

fn instance_sync(pre: &InstancePre<()>) -> Result<(Store<()>, OnData)> {
    let mut store = store(pre.engine());
    let instance = pre.instantiate(&mut store)?;
    let on_data = on_data(&mut store, &instance)?;
    Ok((store, on_data))
}

async fn instance_async(pre: &InstancePre<()>) -> Result<(Store<()>, OnData)> {
    let mut store = store(pre.engine());
    let instance = pre.instantiate_async(&mut store).await?;
    let on_data = on_data(&mut store, &instance)?;
    Ok((store, on_data))
}

fn call_sync(store: &mut Store<()>, on_data: OnData, calls: u32) -> Result<()> {
    for _ in 0..calls {
        // The host re-arms the deadline before every callback.
        store.set_epoch_deadline(1);
        let (result,) = on_data.call(&mut *store, (Resource::new_borrow(1), &MESSAGE))?;
        checked(result)?;
    }
    Ok(())
}

async fn call_async(store: &mut Store<()>, on_data: OnData, calls: u32) -> Result<()> {
    for _ in 0..calls {
        store.set_epoch_deadline(1);
        let (result,) = on_data.call_async(&mut *store, (Resource::new_borrow(1), &MESSAGE)).await?;
        checked(result)?;
    }
    Ok(())
}

fn checked(result: Result<(), String>) -> Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(message) => bail!("the guest's on-data returned an error: {message}"),
    }
}

/// How the instances are called.
#[derive(Debug, Clone, Copy)]
enum Calls {
    /// With `call_async`, as the host calls: the store keeps the fiber's
    /// stack for its next call.
    Async,
    /// With `call`: no fiber.
    Sync,
}

/// Resident memory per instance of the per-connection model's engine, each
/// called once: the growth over `instances` of them, after one made and
/// called first so that what every instance shares (the compiled code, the
/// pool's first pages) is already there. The instances go into `held`, and
/// stay there while the next measurement runs: freed, their heap would be
/// reused by it, and not counted.
fn instance_memory(
    args: &Args,
    runtime: &tokio::runtime::Runtime,
    calls: Calls,
    held: &mut Vec<Store<()>>,
) -> Result<f64> {
    // An engine, and so a pool, of its own, as a host starts with: drawn
    // from a pool the other measurement filled first, instances measured
    // about 0.7 KiB more.
    let limits = Limits { max_connections: args.instances + 1, ..Limits::default() };
    let engine = evconn_host::wasm::engine(Isolation::Connection, &limits)?;
    let pre = prepare(&engine, &args.component)?;
    let make = || match calls {
        Calls::Async => runtime.block_on(async {
            let (mut store, on_data) = instance_async(&pre).await?;
            call_async(&mut store, on_data, 1).await?;
            anyhow::Ok(store)
        }),
        Calls::Sync => {
            let (mut store, on_data) = instance_sync(&pre)?;
            call_sync(&mut store, on_data, 1)?;
            Ok(store)
        }
    };
    held.reserve(args.instances + 1);
    held.push(make()?);
    let before = rss_bytes()?;
    for _ in 0..args.instances {
        held.push(make()?);
    }
    let after = rss_bytes()?;
    Ok(after.saturating_sub(before) as f64 / 1024.0 / args.instances as f64)
}

/// This process's resident memory, from /proc/self/statm.
fn rss_bytes() -> Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).context("unreadable statm")?;
    Ok(pages * rustix::param::page_size() as u64)
}

/// This thread's CPU time so far.
fn cpu_now() -> Duration {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}
