//! What the benchmark changes about its own process and the ones it
//! starts: CPU pinning, the descriptor limit, and how long it waits for them.
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    match sched_getaffinity(None) {
        Ok(set) => (0..CpuSet::MAX_CPU).filter(|&cpu| set.is_set(cpu)).collect(),
        Err(_) => Vec::new(),
    }
}

/// A set holding one CPU, built before fork so the child only has to make
/// the system call.
pub fn cpu_set(cpu: usize) -> CpuSet {
    let mut set = CpuSet::new();
    set.set(cpu);
    set
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    apply(&cpu_set(cpu))
}

/// Applies `set` to the calling thread; async-signal-safe, so usable between
/// fork and exec.
pub fn apply(set: &CpuSet) -> io::Result<()> {
    Ok(sched_setaffinity(None, set)?)
}

/// Makes `command`'s process run on `cpu` only, from its first instruction.
pub fn pin_command(command: &mut Command, cpu: usize) {
    let set = cpu_set(cpu);
    // SAFETY: the closure only makes one async-signal-safe system call.
    unsafe {
        command.pre_exec(move || apply(&set));
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, for the idle-connection
/// test: the benchmark holds one end of each connection and the server,
/// which inherits the limit, the other. Returns the new soft limit.
pub fn raise_nofile() -> io::Result<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum })?;
    }
    Ok(limit.maximum.unwrap_or(u64::MAX))
}

/// Waits at most `timeout` for `child` to exit. Past it, or when waiting
/// fails, the child is killed and reaped: `Ok(None)` for the timeout.
pub fn wait_at_most(child: &mut Child, timeout: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        let waited = child.try_wait();
        if let Ok(Some(status)) = waited {
            return Ok(Some(status));
        }
        if waited.is_err() || Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return waited.map(|_| None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
