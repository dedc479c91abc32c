//! Compiled code across runs: `host compile` files serve like components
//! when the operator allows machine code, and the code cache spares a
//! restart the compilation, from a folder nobody else can write to.
use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{HostProcess, free_port};

/// Starts the host binary with `args` and checks it echoes.
fn serves_echo(args: &[&str]) -> HostProcess {
    let address = format!("127.0.0.1:{}", free_port());
    let host = HostProcess::spawn_with(
        Command::new(support::host_binary())
            .args(["--listen", address.as_str()])
            .args(args)
            .env("RUST_LOG", "debug,cranelift=warn,wasmtime=warn"),
    );
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "not listening:\n{}", host.output());
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream.write_all(b"compiled once").unwrap();
    let mut back = [0u8; 13];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"compiled once");
    host
}

fn entries(dir: &Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(list) => list.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "cwasm")).collect(),
        Err(_) => Vec::new(),
    }
}

/// `host compile` writes a file that `host --component --allow-precompiled`
/// serves, under both isolation models.
#[test]
fn precompiled_component_serves_when_allowed() {
    let dir = tempdir("precompiled");
    let output = compile_echo(&dir);
    for isolation in ["shared", "connection"] {
        let args =
            ["--component", output.to_str().unwrap(), "--allow-precompiled", "--no-cache", "--isolation", isolation];
        drop(serves_echo(&args));
    }
}

/// Without `--allow-precompiled`, a file of machine code is refused before
/// anything is bound, with one line that names the file and the flag.
#[test]
fn precompiled_code_is_refused_unless_allowed() {
    let dir = tempdir("refused-precompiled");
    let output = compile_echo(&dir);
    let address = format!("127.0.0.1:{}", free_port());
    let run = Command::new(support::host_binary())
        .args(["--component", output.to_str().unwrap(), "--listen", &address, "--no-cache"])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("precompiled machine code") && errors[0].contains("--allow-precompiled"), "{stderr}");
    assert!(errors[0].contains(output.to_str().unwrap()), "the line names the file: {stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(TcpStream::connect(&address).is_err(), "nothing listens");
}

/// Compiles the echo guest into `dir` with `host compile`.
fn compile_echo(dir: &Path) -> std::path::PathBuf {
    let output = dir.join("echo.cwasm");
    let status = Command::new(support::host_binary())
        .args(["compile", support::guest("echo").to_str().unwrap(), "-o", output.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&output).unwrap();
    assert!(bytes.starts_with(b"\x7fELF"), "not a compiled file");
    output
}

/// `host compile` refuses what could never serve, with one line naming the file.
#[test]
fn compile_refuses_a_component_of_another_world() {
    let dir = tempdir("refused");
    let other = support::guest("not-a-handler");
    let output = Command::new(support::host_binary())
        .args(["compile", other.to_str().unwrap(), "-o", dir.join("x.cwasm").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not an evconn handler"), "{stderr}");
    assert!(!dir.join("x.cwasm").exists());
}

/// The first start fills the cache; the second loads from it; a damaged
/// entry, or one others may write to, costs a compilation, not a failure,
/// and is never run.
#[test]
fn cache_spares_the_second_start() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("cache");
    let echo = support::guest("echo");
    let args = ["--component", echo.to_str().unwrap(), "--cache-dir", dir.to_str().unwrap()];

    let first = serves_echo(&args);
    assert_eq!(first.count_lines("compiled code from the cache"), 0);
    drop(first);
    let stored = entries(&dir);
    assert_eq!(stored.len(), 1, "one entry after the first start");
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&stored[0]), 0o600, "the host's user alone may read and write an entry");

    let second = serves_echo(&args);
    assert_eq!(second.count_lines("compiled code from the cache"), 1, "{}", second.output());
    drop(second);

    std::fs::write(&stored[0], b"not compiled code").unwrap();
    let third = serves_echo(&args);
    assert_eq!(third.count_lines("unusable cache entry"), 1, "{}", third.output());
    drop(third);
    assert!(std::fs::read(&stored[0]).unwrap().starts_with(b"\x7fELF"), "the entry was not rewritten");

    // An entry anyone could have replaced is compiled again, not run.
    std::fs::set_permissions(&stored[0], std::fs::Permissions::from_mode(0o666)).unwrap();
    let fourth = serves_echo(&args);
    assert_eq!(fourth.count_lines("cache entry not trusted"), 1, "{}", fourth.output());
    assert_eq!(fourth.count_lines("compiled code from the cache"), 0, "{}", fourth.output());
    drop(fourth);
    assert_eq!(mode(&stored[0]), 0o600, "the entry was written again, for the host's user alone");
}

/// A cache folder others may write to is refused at start, with one line
/// that says why and what to do.
#[test]
fn a_cache_folder_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir("open-cache");
    std::fs::set_permissions(&*dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let echo = support::guest("echo");
    let address = format!("127.0.0.1:{}", free_port());
    let run = Command::new(support::host_binary())
        .args(["--component", echo.to_str().unwrap(), "--listen", &address, "--cache-dir", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("writable by group or others (mode 0777)") && stderr.contains("--no-cache"), "{stderr}");
    assert!(entries(&dir).is_empty(), "nothing was written there");
}

/// A fresh folder under the target directory, removed on drop.
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn tempdir(name: &str) -> TempDir {
    let dir =
        support::workspace().join("target").join("test-tmp").join(format!("code-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}
