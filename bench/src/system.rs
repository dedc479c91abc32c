//! What the benchmark changes about its own process and the ones it
//! starts: CPU pinning, the descriptor limit, and how long it waits for them.
use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// A set holding one CPU, built before fork so the child only has to make
/// the system call.
pub fn cpu_set(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: as above.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    apply(&cpu_set(cpu))
}

/// Applies `set` to the calling thread; async-signal-safe, so usable between
/// fork and exec.
pub fn apply(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: `set` is a valid cpu_set_t of the size given.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
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
    // SAFETY: rlimit is plain data; getrlimit/setrlimit read and write it.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(limit.rlim_cur)
    }
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
