//! Starting the `host` binary as systemd starts a socket-activated service:
//! listening sockets on descriptors 3, 4, ... and the `LISTEN_*` variables.
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use super::HostProcess;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
const FIRST: RawFd = 3;

/// The host started as systemd would start it: each of `fds` becomes
/// descriptor 3, 4, ... of the host, `LISTEN_FDNAMES` is `names`, and
/// `LISTEN_PID` is the host's own pid (the shell's `$$`, which `exec` keeps),
/// unless `pid` says otherwise.
pub fn spawn_activated(fds: &[RawFd], names: &str, pid: Option<&str>, args: &[&str]) -> HostProcess {
    let pid = pid.unwrap_or("$$");
    let script = format!("LISTEN_PID={pid} LISTEN_FDS={} LISTEN_FDNAMES={names} exec \"$0\" \"$@\"", fds.len());
    let sources = fds.to_vec();
    // Filled in the child; allocated here, as nothing may allocate there.
    let mut copies = vec![0; fds.len()];
    let past = FIRST + fds.len() as RawFd;
    let mut command = Command::new("sh");
    command.arg("-c").arg(script).arg(super::host_binary()).args(args);
    // SAFETY: between fork and exec this only calls fcntl and dup2, which are
    // async-signal-safe, and writes into memory allocated before the fork.
    unsafe {
        command.pre_exec(move || {
            // Copies first, above the target range: a source may sit where
            // another one goes.
            for (copy, fd) in copies.iter_mut().zip(&sources) {
                *copy = libc::fcntl(*fd, libc::F_DUPFD_CLOEXEC, past);
                if *copy < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            // dup2 leaves the new descriptor open across exec.
            for (target, copy) in (FIRST..).zip(&copies) {
                if libc::dup2(*copy, target) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    HostProcess::spawn_with(&mut command)
}
