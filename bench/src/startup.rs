//! Start time: from spawning a server to its first echo on a fresh
//! connection. The host starts with an empty code cache (it compiles the
//! component), with that cache again (warm), and with a file `host compile`
//! made; the native servers have nothing to compile, and their start
//! (process start and bind) is the floor. The guest-socket server's wasmtime
//! CLI (built without its code cache) compiles the guest at every start.
use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cli::Plan;
use crate::figures::Figure;
use crate::measure::Outcome;
use crate::servers::{self, Code, Programs, ServerKind};
use crate::stats::Summary;

/// The echo component compiled ahead of time, once per run.
#[derive(Debug, Clone, Serialize)]
pub struct Precompiled {
    pub file: PathBuf,
    /// How long `host compile` took.
    pub seconds: f64,
}

/// The longest `host compile` may take: it compiles the component twice
/// (once to check it links), slowly in a debug build.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `host compile` on the echo component into `dir`, pinned to `cpu`
/// as the servers are, its output appended to `log`.
pub fn precompile(programs: &Programs, dir: &Path, cpu: Option<usize>, log: &Path) -> Result<Precompiled, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let file = dir.join("echo.cwasm");
    let mut out = File::options().create(true).append(true).open(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let _ = writeln!(out, "==== host compile at {}", crate::clock::utc_now());
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let mut command = Command::new(&programs.host);
    command.arg("compile").arg(&programs.echo_wasm).arg("-o").arg(&file);
    command.stdin(Stdio::null()).stdout(out).stderr(err);
    if let Some(cpu) = cpu {
        crate::system::pin_command(&mut command, cpu);
    }
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| format!("cannot run host compile: {e}"))?;
    match crate::system::wait_at_most(&mut child, COMPILE_TIMEOUT).map_err(|e| e.to_string())? {
        Some(status) if status.success() => {}
        Some(status) => return Err(format!("host compile failed ({status}); see {}", log.display())),
        None => return Err(format!("host compile took over {COMPILE_TIMEOUT:?}; see {}", log.display())),
    }
    Ok(Precompiled { file, seconds: started.elapsed().as_secs_f64() })
}

/// One round's start figures for `kind`: `plan.starts` starts of each kind,
/// interleaved (cold, warm, precompiled, cold, ...) so that a slow moment of
/// the machine does not fall on one kind only, each a fresh process pinned
/// to `cpu`. A figure is the median of its starts. Cold starts get a fresh
/// cache folder under `scratch`, removed after the warm start that reuses
/// it. The native servers and the guest-socket server start with the same
/// command each time.
/// Returns the figures and how the servers ended.
pub fn run(
    programs: &Programs,
    kind: ServerKind,
    plan: &Plan,
    cpu: Option<usize>,
    log: &Path,
    scratch: &Path,
    precompiled: Result<&Path, &str>,
) -> Result<(Outcome, String), String> {
    let precompiled = match (kind.is_evconn(), precompiled) {
        (false, _) => Code::Component,
        (true, Ok(file)) => Code::Precompiled(file.to_path_buf()),
        (true, Err(reason)) => return Err(format!("no precompiled file: {reason}")),
    };
    let mut runs: BTreeMap<Figure, Vec<f64>> = BTreeMap::new();
    let mut stopped = BTreeSet::new();
    for i in 0..plan.starts {
        let cache = scratch.join(format!("cache-{}-{i}", kind.key()));
        remove(&cache)?;
        let codes = [
            (Figure::ColdStart, Code::CacheIn(cache.clone())),
            (Figure::WarmStart, Code::CacheIn(cache.clone())),
            (Figure::PrecompiledStart, precompiled.clone()),
        ];
        for (figure, code) in codes {
            let server = servers::start(programs, kind, &code, cpu, log)?;
            runs.entry(figure).or_default().push(server.ready_after.as_secs_f64() * 1e3);
            stopped.insert(server.stop());
            // A cold start that left no entry would make the warm one a
            // second cold one, and its figure a lie.
            if figure == Figure::ColdStart && kind.is_evconn() && !holds_entry(&cache) {
                return Err(format!("the host wrote no compiled code to {}; see {}", cache.display(), log.display()));
            }
        }
        remove(&cache)?;
    }
    let values = runs.iter().filter_map(|(f, times)| Some((*f, Summary::of(times)?.median))).collect();
    let outcome = Outcome { values, usage: None, count: runs.values().map(|t| t.len() as u64).sum(), note: None, runs };
    Ok((outcome, stopped.into_iter().collect::<Vec<_>>().join("; ")))
}

/// Whether the cache folder holds a compiled component.
fn holds_entry(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().any(|e| e.path().extension().is_some_and(|x| x == "cwasm")))
        .unwrap_or(false)
}

/// Removes a folder the start figures made, if it is there.
pub fn remove(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("cannot remove {}: {e}", dir.display())),
        _ => Ok(()),
    }
}
