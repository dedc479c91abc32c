//! Runs `host test` (the component test kit's command) as a child process
//! and reads its report.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What `host test` printed and how it exited.
pub struct Run {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.output.status.success()
    }

    /// Lines of the report that start with `outcome` (`pass`, `FAIL`, `skip`).
    pub fn steps(&self, outcome: &str) -> Vec<&str> {
        self.stdout.lines().filter(|l| l.trim_start().starts_with(&format!("{outcome} "))).collect()
    }
}

/// Runs `host test` with `args`, logging at the default level for tests,
/// without a code cache (Rust guests compile in milliseconds). Shows the
/// report in the test's output.
pub fn host_test(args: &[&str]) -> Run {
    let output = Command::new(super::host_binary())
        .arg("test")
        .arg("--no-cache")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the host runs");
    let run = Run {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        output,
    };
    eprintln!("host test {args:?}: {}\n--- stdout\n{}--- stderr\n{}", run.output.status, run.stdout, run.stderr);
    assert!(!run.stderr.contains("panicked"), "the host panicked");
    run
}

/// `path` as the `&str` a command line takes.
pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

/// The scripts (`*.evt`) in `dir`, sorted.
pub fn scripts_in(dir: &Path) -> Vec<PathBuf> {
    let mut scripts: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "evt"))
        .collect();
    scripts.sort();
    scripts
}
