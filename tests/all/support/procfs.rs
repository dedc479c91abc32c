//! What /proc tells about a process: descriptors, CPU time, memory, and
//! lowering its descriptor limit with prlimit.
use std::collections::BTreeSet;
use std::process::Command;

/// The descriptors open in process `pid`.
pub fn open_fds(pid: u32) -> BTreeSet<u32> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the descriptor table is readable")
        .map(|entry| entry.unwrap().file_name().to_string_lossy().parse().unwrap())
        .collect()
}

/// Lowers the descriptor limit of `pid` so that only `spare` more
/// descriptors can be opened, and returns the limit. The kernel hands out
/// the lowest free number and refuses one at or above the limit, so the
/// limit counts from the lowest free number (holes above it, or descriptors
/// above it that stay open, do not matter).
pub fn limit_descriptors(pid: u32, spare: u32) -> u32 {
    let open = open_fds(pid);
    let limit = lowest_free(&open) + spare;
    eprintln!("process {pid} holds {} descriptors {open:?}; limiting it to {limit}", open.len());
    prlimit_nofile(pid, &format!("{limit}:{limit}"));
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[3..5], [limit.to_string(), limit.to_string()], "{line}");
    limit
}

/// The lowest descriptor number free in process `pid`: the next one it gets.
pub fn lowest_free_fd(pid: u32) -> u32 {
    lowest_free(&open_fds(pid))
}

fn lowest_free(open: &BTreeSet<u32>) -> u32 {
    (0..).find(|fd| !open.contains(fd)).unwrap()
}

/// Sets the soft descriptor limit of `pid` and leaves the hard one, so that
/// (unlike [`limit_descriptors`]) it can be raised again without privileges.
pub fn set_soft_descriptor_limit(pid: u32, limit: u32) {
    prlimit_nofile(pid, &format!("{limit}:"));
}

/// Runs `prlimit --nofile=LIMITS` on `pid` (`SOFT:HARD`, either may be empty).
fn prlimit_nofile(pid: u32, limits: &str) {
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(pid.to_string())
        .arg(format!("--nofile={limits}"))
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit failed: {status}");
}

/// The CPU time (user + system, in clock ticks) process `pid` has used.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), utime and stime; `rest` starts at field 3.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
pub fn clock_ticks_per_second() -> u64 {
    rustix::param::clock_ticks_per_second()
}

/// The CPU time (user + system) process `pid` has used.
pub fn cpu_time(pid: u32) -> std::time::Duration {
    std::time::Duration::from_millis(cpu_ticks(pid) * 1000 / clock_ticks_per_second())
}

/// A field of /proc/PID/status in kB, such as `VmRSS` or `VmHWM`.
pub fn status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}
