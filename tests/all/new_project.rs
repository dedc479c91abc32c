//! A handler outside this repository, as a new guest author makes one: `host
//! new` in each language in a folder of its own under the system's
//! temporary folder, its `./build`, then `host test` on its script and
//! `host --component` serving it to a real client. And `host wit` writes
//! exactly the package in `wit/`.
use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{HostProcess, free_port, host_binary};

/// A fresh folder outside the workspace, so nothing of the repository's
/// (its Cargo workspace, its node_modules) is in reach.
fn outside(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("evconn-new-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `command`, failing the test with its output if it fails.
fn run(command: &mut Command, what: &str) -> String {
    let output = command.output().unwrap_or_else(|e| panic!("{what} does not run: {e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed ({}):\n{text}", output.status);
    text
}

/// Where compiled code is kept across the tests' runs: a Python or
/// JavaScript component takes a debug host long to compile.
fn code_cache() -> PathBuf {
    support::workspace().join("target").join("guests").join("code-cache")
}

/// `host new NAME --lang LANG`, `./build`, `host test`, and a real client
/// against `host --component`.
fn new_project_works(lang: &str) {
    let parent = outside(lang);
    let name = format!("hello-{lang}");
    let made = run(Command::new(host_binary()).args(["new", &name, "--lang", lang, "--dir"]).arg(&parent), "host new");
    assert!(made.contains("./build"), "{made}");
    let dir = parent.join(&name);
    let mut build = Command::new(dir.join("build"));
    build.current_dir(&parent).env("HOST", host_binary());
    // Rust: the compiled dependencies are kept between the tests' runs.
    build.env("CARGO_TARGET_DIR", support::workspace().join("target").join("new-projects"));
    run(&mut build, &format!("{name}/build"));
    let component = dir.join(format!("{name}.wasm"));
    assert!(component.is_file(), "{} was not written", component.display());

    let cache = code_cache();
    let script = dir.join("tests").join("welcome.evt");
    let tested = run(
        Command::new(host_binary())
            .args(["test", "--cache-dir"])
            .arg(&cache)
            .arg(&component)
            .arg(&script)
            .env_remove("RUST_LOG"),
        "host test",
    );
    assert!(tested.contains("1 script passed"), "{tested}");

    let port = free_port();
    let address = format!("127.0.0.1:{port}");
    let host = HostProcess::spawn(&[
        "--component",
        component.to_str().unwrap(),
        "--listen",
        &address,
        "--cache-dir",
        cache.to_str().unwrap(),
    ]);
    assert!(host.wait_for_line("listening", Duration::from_secs(120)).is_some(), "{}", host.output());
    let mut stream = TcpStream::connect(&address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "welcome, visitor 1\n");
    stream.write_all(b"outside the repository\n").unwrap();
    line.clear();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "outside the repository\n");
    let _ = std::fs::remove_dir_all(&parent);
}

#[test]
fn a_new_rust_handler_builds_tests_and_serves() {
    new_project_works("rust");
}

#[test]
fn a_new_c_handler_builds_tests_and_serves() {
    new_project_works("c");
}

#[test]
fn a_new_python_handler_builds_tests_and_serves() {
    new_project_works("python");
}

#[test]
fn a_new_javascript_handler_builds_tests_and_serves() {
    new_project_works("js");
}

/// A name that cannot name a folder, a file and a bucket is refused, and so
/// is a folder that exists.
#[test]
fn host_new_refuses_bad_names_and_existing_folders() {
    let parent = outside("refused");
    let output = Command::new(host_binary()).args(["new", "Bad_Name", "--lang", "c", "--dir"]).arg(&parent).output();
    let output = output.unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot name a handler"));
    run(Command::new(host_binary()).args(["new", "twice", "--lang", "c", "--dir"]).arg(&parent), "host new");
    let again = Command::new(host_binary()).args(["new", "twice", "--lang", "rust", "--dir"]).arg(&parent).output();
    assert!(String::from_utf8_lossy(&again.unwrap().stderr).contains("exists already"));
    let _ = std::fs::remove_dir_all(&parent);
}

/// Every file of the repository's `wit/` and nothing else, byte for byte.
#[test]
fn host_wit_writes_the_package_the_host_serves() {
    let parent = outside("wit");
    let out = parent.join("wit");
    run(Command::new(host_binary()).arg("wit").arg(&out), "host wit");
    let ours = support::workspace().join("wit");
    let (mut written, mut expected) = (Vec::new(), Vec::new());
    files(&out, &out, &mut written);
    files(&ours, &ours, &mut expected);
    written.sort();
    expected.sort();
    assert_eq!(written, expected);
    for (path, text) in &written {
        assert_eq!(text, &std::fs::read(ours.join(path)).unwrap(), "{path}");
    }
    let _ = std::fs::remove_dir_all(&parent);
}

/// Every file under `dir`, by path relative to `root`, with its bytes.
fn files(root: &Path, dir: &Path, found: &mut Vec<(String, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(root, &path, found);
        } else {
            let relative = path.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            found.push((relative, std::fs::read(&path).unwrap()));
        }
    }
}
