//! The wasmtime floor: runs `wasmtime-floor` (the echo guest on the host's
//! engine, with no host around it) pinned where the servers run, once a
//! round, and reads its figures.
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::cli::Plan;

/// What wasmtime alone costs for the echo guest, in one round.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct FloorRun {
    /// Not printed by `wasmtime-floor`: set here.
    #[serde(default)]
    pub round: u32,
    /// CPU per `on-data` call of 64 bytes written back, with `call_async`.
    pub call_async_us: f64,
    /// The same with `call`: no fiber, so a long callback could not yield.
    pub call_sync_us: f64,
    /// Resident memory per pooled instance, called once with `call_async`.
    pub instance_kib: f64,
    /// The same called with `call`: no fiber stack kept.
    pub instance_sync_kib: f64,
}

/// The longest one run may take: it compiles the component three times
/// (once per engine), slowly in a debug build, then makes its calls and
/// instances.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `program` on `component` pinned to `cpu`, with calls and instances
/// sized by `plan`.
pub fn run(program: &Path, component: &Path, plan: &Plan, cpu: Option<usize>, round: u32) -> Result<FloorRun, String> {
    let (calls, instances) = if plan.smoke { (2_000, 50) } else { (200_000, 1_000) };
    let mut command = Command::new(program);
    command
        .arg(component)
        .args(["--calls", &calls.to_string(), "--instances", &instances.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cpu) = cpu {
        crate::system::pin_command(&mut command, cpu);
    }
    let mut child = command.spawn().map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if crate::system::wait_at_most(&mut child, TIMEOUT).map_err(|e| e.to_string())?.is_none() {
        return Err(format!("{} took over {TIMEOUT:?}", program.display()));
    }
    let output = child.wait_with_output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!("{} failed ({}): {}", program.display(), output.status, stderr.trim()));
    }
    let printed: FloorRun = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!("{} printed no figures ({e}): {}", program.display(), String::from_utf8_lossy(&output.stdout))
    })?;
    Ok(FloorRun { round, ..printed })
}
