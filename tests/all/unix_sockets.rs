//! Unix domain socket listeners, with real clients (socat, nc -U): the echo
//! over a path, the file's mode, its removal at exit, a stale file replaced
//! and a live one refused, the peer's credentials as the guest sees them,
//! guest binds as `--allow-bind` grants them, and the config file's form.
use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::HostProcess;
use support::tools::run;

/// How long a host may take to start listening.
const START: Duration = Duration::from_secs(60);

/// A fresh folder for this test's sockets.
fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evconn-unix-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A host serving `component` on `unix:PATH`, with `extra` flags, once it
/// listens.
fn serve(component: &Path, path: &Path, extra: &[&str]) -> HostProcess {
    let listen = format!("unix:{}", path.display());
    let mut args = vec!["--component", component.to_str().unwrap(), "--listen", &listen];
    args.extend_from_slice(extra);
    let host = HostProcess::spawn(&args);
    assert!(host.wait_for_line("listening", START).is_some(), "the host listens on {listen}");
    host
}

/// Sends `line` and reads the answer's line.
fn ask(stream: &mut UnixStream, line: &str) -> String {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut answer = String::new();
    BufReader::new(&*stream).read_line(&mut answer).unwrap();
    answer.trim_end().to_string()
}

/// Runs a client `program` with `input` on its stdin (bounded by 20 s);
/// fails unless it succeeds; returns its stdout.
fn client(program: &str, args: &[&str], input: &str) -> String {
    let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
    let ran = run(program, &args, input, Duration::from_secs(20));
    assert!(ran.status.success(), "{program} {args:?}: {:?}\n{}", ran.status, ran.stderr);
    ran.stdout
}

/// socat and `nc -U` get their lines echoed over the path; the file has
/// the mode asked for; the host removes it when it stops.
#[test]
fn real_clients_are_echoed_over_a_path_with_the_mode_asked_and_the_file_goes_at_exit() {
    let dir = folder("echo");
    let path = dir.join("echo.sock");
    let mut host = serve(&support::guest("echo"), &path, &["--unix-mode", "640"]);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "--unix-mode 640");

    let address = format!("UNIX-CONNECT:{}", path.display());
    assert_eq!(client("socat", &["-t", "5", "-", &address], "hello socat\n"), "hello socat\n");
    let nc = client("nc", &["-N", "-U", path.to_str().unwrap()], "hello nc\n");
    assert_eq!(nc, "hello nc\n");

    host.signal(rustix::process::Signal::TERM);
    assert!(host.wait_exit(Duration::from_secs(20)).is_some_and(|status| status.success()));
    assert!(!path.exists(), "the socket file is removed at exit");
}

/// A file left by a host that died is replaced; a path another host listens
/// on is refused with a clear error, and that host serves on; a file that
/// is not a socket is left alone.
#[test]
fn a_stale_file_is_replaced_and_a_live_one_is_refused() {
    let dir = folder("stale");
    let path = dir.join("s.sock");
    // What a killed process leaves: the file, with nothing listening.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let echo = support::guest("echo");
    let _host = serve(&echo, &path, &[]);
    let mut stream = UnixStream::connect(&path).unwrap();
    assert_eq!(ask(&mut stream, "first"), "first");

    let listen = format!("unix:{}", path.display());
    let mut second = HostProcess::spawn(&["--component", echo.to_str().unwrap(), "--listen", &listen]);
    let status = second.wait_exit(START).expect("the second host gives up");
    assert!(!status.success());
    let refused = second.wait_for_line("something listens on it", Duration::from_secs(5));
    assert!(refused.is_some(), "the error says why: {}", second.output());
    assert_eq!(ask(&mut stream, "still"), "still", "the first host serves on");
    let mut again = UnixStream::connect(&path).expect("its file is still there");
    assert_eq!(ask(&mut again, "again"), "again");

    let regular = dir.join("notes.txt");
    std::fs::write(&regular, "keep me").unwrap();
    let listen = format!("unix:{}", regular.display());
    let mut third = HostProcess::spawn(&["--component", echo.to_str().unwrap(), "--listen", &listen]);
    assert!(!third.wait_exit(START).expect("it gives up").success());
    assert!(third.wait_for_line("not a socket", Duration::from_secs(5)).is_some(), "{}", third.output());
    assert_eq!(std::fs::read_to_string(&regular).unwrap(), "keep me");
}

/// The guest sees a Unix peer as the path-less end of the client, with the
/// client process's credentials, and no TLS.
#[test]
fn the_guest_sees_the_peers_credentials() {
    let dir = folder("peer");
    let path = dir.join("probe.sock");
    let _host = serve(&support::guest("probe"), &path, &[]);
    let mut stream = UnixStream::connect(&path).unwrap();
    let expected = format!(
        "peer unix:(unnamed) pid={} uid={} gid={}",
        std::process::id(),
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    );
    assert_eq!(ask(&mut stream, "peer"), expected);
    assert_eq!(ask(&mut stream, "tls"), "none");
}

/// A guest binds a Unix path only when `--allow-bind unix:PATH` names it;
/// connections to it reach the guest; a path next to it is refused.
#[test]
fn a_guest_binds_only_the_paths_it_is_allowed() {
    let dir = folder("bind");
    let path = dir.join("probe.sock");
    let allowed = dir.join("guest.sock");
    let grant = format!("unix:{}", allowed.display());
    let _host = serve(&support::guest("probe"), &path, &["--allow-bind", &grant]);
    let mut stream = UnixStream::connect(&path).unwrap();

    let refused = dir.join("other.sock");
    assert_eq!(ask(&mut stream, &format!("bind unix:{} -1 -", refused.display())), "error access-denied");
    assert!(!refused.exists());
    let answer = ask(&mut stream, &format!("bind unix:{} -1 -", allowed.display()));
    assert!(answer.starts_with("bound ") && answer.ends_with(&grant), "{answer}");
    let mut through = UnixStream::connect(&allowed).expect("the guest's listener accepts");
    assert!(ask(&mut through, "peer").starts_with("peer unix:(unnamed) pid="));
}

/// In the config file, a relative socket path is relative to the file's
/// folder, and `unix-mode` sets the file's mode.
#[test]
fn the_config_file_listens_on_a_relative_path_with_its_mode() {
    let dir = folder("config");
    let config = dir.join("evconn.toml");
    let echo = support::guest("echo");
    let text = format!(
        "[[listener]]\ncomponent = {:?}\nlisten = [\"unix:echo.sock\"]\nunix-mode = \"600\"\n",
        echo.display().to_string()
    );
    std::fs::write(&config, text).unwrap();
    let host = HostProcess::spawn(&["--config", config.to_str().unwrap()]);
    assert!(host.wait_for_line("listening", START).is_some(), "{}", host.output());
    let path = dir.join("echo.sock");
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let mut stream = UnixStream::connect(&path).unwrap();
    assert_eq!(ask(&mut stream, "from the config"), "from the config");
}
