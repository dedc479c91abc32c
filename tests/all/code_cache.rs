//! Compiled code across runs: `host compile` files serve like components,
//! and the code cache spares a restart the compilation.
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

/// `host compile` writes a file that `host --component` serves, under both
/// isolation models.
#[test]
fn precompiled_component_serves() {
    let dir = tempdir("precompiled");
    let output = dir.join("echo.cwasm");
    let status = Command::new(support::host_binary())
        .args(["compile", support::guest("echo").to_str().unwrap(), "-o", output.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&output).unwrap();
    assert!(bytes.starts_with(b"\x7fELF"), "not a compiled file");
    for isolation in ["shared", "connection"] {
        drop(serves_echo(&["--component", output.to_str().unwrap(), "--no-cache", "--isolation", isolation]));
    }
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
/// entry costs a compilation, not a failure.
#[test]
fn cache_spares_the_second_start() {
    let dir = tempdir("cache");
    let echo = support::guest("echo");
    let args = ["--component", echo.to_str().unwrap(), "--cache-dir", dir.to_str().unwrap()];

    let first = serves_echo(&args);
    assert_eq!(first.count_lines("compiled code from the cache"), 0);
    drop(first);
    let stored = entries(&dir);
    assert_eq!(stored.len(), 1, "one entry after the first start");

    let second = serves_echo(&args);
    assert_eq!(second.count_lines("compiled code from the cache"), 1, "{}", second.output());
    drop(second);

    std::fs::write(&stored[0], b"not compiled code").unwrap();
    let third = serves_echo(&args);
    assert_eq!(third.count_lines("unusable cache entry"), 1, "{}", third.output());
    drop(third);
    assert!(std::fs::read(&stored[0]).unwrap().starts_with(b"\x7fELF"), "the entry was not rewritten");
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
    let dir = support::workspace().join("target").join("test-tmp").join(format!("code-cache-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    TempDir(dir)
}
