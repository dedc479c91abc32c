//! `host --config FILE`: several listeners, each with its own component and
//! options, from a TOML file; mistakes are refused with the line they are on
//! before anything is bound.
use crate::support;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::{HostProcess, Probe};

/// A config file with `text` in a fresh folder under target/.
fn config(name: &str, text: &str) -> PathBuf {
    let dir =
        support::workspace().join("target").join("test-tmp").join(format!("config-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("evconn.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn free_address() -> SocketAddr {
    format!("127.0.0.1:{}", support::free_port()).parse().unwrap()
}

fn spawn(config: &Path) -> HostProcess {
    let host = HostProcess::spawn(&["--config", config.to_str().unwrap()]);
    assert!(host.wait_for_line("listening", Duration::from_secs(60)).is_some(), "not listening:\n{}", host.output());
    host
}

/// Two components on three listeners: echo on one, the probe on two. The
/// probe's listeners share one instance (its count sees both), and each
/// listener has its own options.
#[test]
fn several_listeners_each_with_its_component() {
    let (echo_at, probe_a, probe_b) = (free_address(), free_address(), free_address());
    let (echo, probe) = (support::guest("echo"), support::guest("probe"));
    let path = config(
        "several",
        &format!(
            r#"# Settings of the whole host, then one table per listener.
guest-timeout = "2s"
shutdown-timeout = "2s"

[[listener]]
component = "{echo}"
listen = ["{echo_at}"]

[[listener]]
component = "{probe}"
listen = ["{probe_a}"]

[[listener]]
component = "{probe}"
listen = ["{probe_b}"]
options = ["reuseable", "close-on-free", "disabled"]
"#,
            echo = echo.display(),
            probe = probe.display()
        ),
    );
    let host = spawn(&path);
    assert!(support::echoes(echo_at, b"hello"), "echo is not served:\n{}", host.output());
    let mut first = Probe::connect(probe_a);
    assert_eq!(first.ask("count"), "1");
    // The third listener starts disabled: enable it from the probe, which
    // sees every listener that routes to it.
    let operators = first.ask("operators");
    assert_eq!(operators.split_whitespace().count(), 3, "the probe's two listeners: {operators}");
    let id_b = operators
        .split_whitespace()
        .skip(1)
        .find(|entry| entry.ends_with(&probe_b.to_string()))
        .and_then(|entry| entry.split(':').next())
        .unwrap_or_else(|| panic!("{probe_b} not among {operators}"))
        .to_string();
    assert_eq!(first.ask(&format!("enable {id_b}")), "ok");
    let mut second = Probe::connect(probe_b);
    assert_eq!(second.ask("count"), "2", "the two probe listeners share one instance");
    assert_eq!(host.count_lines("component=echo"), 1, "{}", host.output());
}

/// Mistakes in the file stop the host before it binds, quoting the line.
#[test]
fn mistakes_are_refused_with_their_line() {
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap();
    let echo = support::guest("echo");
    let cases = [
        (
            "unknown-key",
            format!("workers = 1\nlisten = [\"{taken}\"]\n[[listener]]\ncomponent = \"{}\"\n", echo.display()),
            "line 2",
            "unknown field `listen`",
        ),
        (
            "bad-port",
            format!("[[listener]]\ncomponent = \"{}\"\nlisten = [\"{taken}\", \"127.0.0.1:99999\"]\n", echo.display()),
            "line 3",
            "Invalid port",
        ),
        (
            "not-a-component",
            format!("[[listener]]\ncomponent = \"evconn.toml\"\nlisten = [\"{taken}\"]\n"),
            "evconn.toml",
            "not a WebAssembly component",
        ),
    ];
    for (name, text, place, reason) in cases {
        let path = config(name, &text);
        let output = Command::new(support::host_binary())
            .args(["--config", path.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(place) && stderr.contains(reason), "{name}: {stderr}");
        assert!(!stderr.contains("in use"), "{name}: the host bound before refusing:\n{stderr}");
    }
}

/// The file replaces the serving flags: giving both is a usage error.
#[test]
fn config_and_serving_flags_do_not_mix() {
    let path = config("mix", "[[listener]]\ncomponent = \"x.wasm\"\n");
    let flags: [&[&str]; 6] = [
        &["--component", "x.wasm"],
        &["--workers", "2"],
        &["--listen", "127.0.0.1:1"],
        &["--isolation", "connection"],
        &["--no-cache"],
        &["--shutdown-timeout", "1s"],
    ];
    for flag in flags {
        let output = Command::new(support::host_binary())
            .args(["--config", path.to_str().unwrap()])
            .args(flag)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{flag:?}: {stderr}");
        assert!(stderr.contains("cannot be used with"), "{flag:?}: {stderr}");
    }
}
