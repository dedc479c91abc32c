//! Runs scripts against a component: a fresh host for each script, every
//! step reported as it runs, and the first failure ending its script (the
//! steps after it depend on it).
use std::collections::HashMap;
use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use super::client::Client;
use super::host::{Host, HostBuilder};
use super::script::{Action, Script, Step};

/// How the steps of a run went.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Steps that passed.
    pub passed: usize,
    /// Steps that failed (at most one a script), and hosts that ended with
    /// an error.
    pub failed: usize,
    /// Steps not run because an earlier one in their script failed.
    pub skipped: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

/// Parses every script in `paths` (refusing to run any if one does not
/// parse), then runs each against a host started from `host`, with
/// `timeout` as the deadline of steps that set none. Reports to `out`.
pub fn run_scripts(
    host: &HostBuilder,
    paths: &[PathBuf],
    timeout: Duration,
    out: &mut dyn Write,
) -> anyhow::Result<Tally> {
    let scripts = paths.iter().map(|path| Script::load(path)).collect::<Result<Vec<_>, _>>()?;
    let mut total = Tally::default();
    let mut failed_scripts = Vec::new();
    for script in &scripts {
        // A fresh host, so no script sees state another one left.
        let running = host.clone().start()?;
        writeln!(out, "{}", script.path.display())?;
        let mut tally = run_script(&running, script, timeout, out)?;
        if let Err(e) = running.stop() {
            writeln!(out, "  FAIL       the host ended with an error: {e:#}")?;
            tally.failed += 1;
        }
        if tally.failed > 0 {
            failed_scripts.push(script.path.display().to_string());
        }
        total.add(tally);
    }
    writeln!(out)?;
    match failed_scripts.len() {
        0 if scripts.len() == 1 => writeln!(out, "1 script passed")?,
        0 => writeln!(out, "{} scripts passed", scripts.len())?,
        n => writeln!(out, "{n} of {} scripts failed: {}", scripts.len(), failed_scripts.join(", "))?,
    }
    let skipped = if total.skipped > 0 { format!(", {} skipped", total.skipped) } else { String::new() };
    writeln!(out, "steps: {} passed, {} failed{skipped}", total.passed, total.failed)?;
    out.flush()?;
    Ok(total)
}

/// Runs the steps of `script` against `host`, reporting each to `out`.
pub fn run_script(host: &Host, script: &Script, timeout: Duration, out: &mut dyn Write) -> io::Result<Tally> {
    let mut connections = HashMap::new();
    let mut tally = Tally::default();
    for (index, step) in script.steps.iter().enumerate() {
        match perform(host, &mut connections, step, timeout) {
            Ok(()) => {
                report(out, "pass", step)?;
                tally.passed += 1;
            }
            Err(why) => {
                report(out, "FAIL", step)?;
                for line in why.lines() {
                    writeln!(out, "              {line}")?;
                }
                tally.failed += 1;
                for later in &script.steps[index + 1..] {
                    report(out, "skip", later)?;
                    tally.skipped += 1;
                }
                break;
            }
        }
    }
    Ok(tally)
}

fn report(out: &mut dyn Write, outcome: &str, step: &Step) -> io::Result<()> {
    writeln!(out, "  {outcome}  {:>4}  {}", step.line, step.source)?;
    // Steps can wait seconds: show each as it ends.
    out.flush()
}

/// Does one step; on failure, says why (over one or more lines).
fn perform(
    host: &Host,
    connections: &mut HashMap<String, Client>,
    step: &Step,
    timeout: Duration,
) -> Result<(), String> {
    fn open<'c>(connections: &'c mut HashMap<String, Client>, conn: &str) -> &'c mut Client {
        // The parser refused steps on connections that are not open.
        connections.get_mut(conn).expect("the parser checked the connection is open")
    }
    match &step.action {
        Action::Open(conn) => {
            let client = host.connect_within(timeout).map_err(|e| format!("{}: {e}", host.addr()))?;
            connections.insert(conn.clone(), client);
        }
        Action::Send { conn, data, within } => open(connections, conn)
            .send_within(data, within.unwrap_or(timeout))
            .map_err(|e| format!("cannot send {} bytes: {e}", data.len()))?,
        Action::Expect { conn, expect, within } => {
            open(connections, conn)
                .expect_within(expect, within.unwrap_or(timeout))
                .map_err(|failure| failure.to_string())?;
        }
        Action::Shutdown(conn) => {
            open(connections, conn).shutdown_write().map_err(|e| format!("cannot shut down: {e}"))?
        }
        Action::Close(conn) => {
            let mut client = connections.remove(conn).expect("the parser checked the connection is open");
            client.set_timeout(timeout);
            client.close().map_err(|e| e.to_string())?;
        }
        Action::Sleep(duration) => std::thread::sleep(*duration),
    }
    Ok(())
}
