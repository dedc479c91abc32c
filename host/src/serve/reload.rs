//! Hot reload: on request (SIGHUP) or when a component's file changes
//! (`--watch`), load the component again, check it against the world, start
//! it on every reactor, and route new connections to it; the listeners'
//! TLS certificates reload on the same triggers ([`super::certificates`]). Connections already
//! open finish on the version that accepted them; listening sockets never
//! close. A file that does not load or a guest that fails to start is
//! refused, and the running version keeps serving. On request, the
//! components' environments are read again too (from the config file), so
//! new instances see new values.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::Services;
use super::certificates::Certificates;
use super::mount::{Mount, Mounted};
use super::worker::Worker;
use crate::wasm::{Isolation, Loader};

/// Reads each component's environment afresh: the component's file and its
/// variables, as the config file gives them now.
pub type EnvironmentSource = Arc<dyn Fn() -> anyhow::Result<Vec<(PathBuf, Vec<(String, String)>)>> + Send + Sync>;

/// What makes a host reload its components.
#[derive(Clone, Default)]
pub struct Triggers {
    /// Reload every component when notified (the binary notifies on SIGHUP).
    pub requests: Option<Arc<Notify>>,
    /// Look at the components' files this often, and reload one that changed
    /// (once its size and modification time hold still for one look).
    pub watch: Option<Duration>,
    /// Where a requested reload reads the components' environments again;
    /// `None` keeps them (the command line's `--env` cannot change).
    pub environments: Option<EnvironmentSource>,
}

/// What the component files look like now: taken before the host says it
/// listens, so a file replaced after that is seen as a change.
pub(super) fn look_at(paths: impl Iterator<Item = PathBuf>) -> Vec<Watched> {
    paths.map(|path| Watched::new(&path)).collect()
}

/// Reloads on every trigger, forever. `stamps` are from [`look_at`], one
/// per app; `certificates` are the listeners' TLS configurations.
pub(super) async fn serve(
    apps: &[Mounted],
    mut stamps: Vec<Watched>,
    mut certificates: Certificates,
    triggers: Triggers,
    loader: &Loader,
    services: &Services,
    isolation: Isolation,
) {
    let requests = triggers.requests.unwrap_or_default();
    let mut poll = triggers.watch.map(|every| {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    });
    loop {
        tokio::select! {
            () = requests.notified() => {
                tracing::info!("reload requested: loading every component again");
                if let Some(source) = &triggers.environments {
                    read_environments(apps, source);
                }
                for (app, stamp) in apps.iter().zip(&mut stamps) {
                    *stamp = Watched::new(&app.path);
                    reload(app, loader, services, isolation).await;
                }
                certificates.reload_all();
            }
            _ = async { poll.as_mut().expect("guarded").tick().await }, if poll.is_some() => {
                for (app, stamp) in apps.iter().zip(&mut stamps) {
                    if stamp.settled_change(&app.path) {
                        let path = app.path.display();
                        tracing::info!(component = %app.name, %path, "component file changed: reloading");
                        reload(app, loader, services, isolation).await;
                    }
                }
                certificates.reload_changed();
            }
        }
    }
}

/// Gives each app the environment `source` reads now, for the instances
/// made from here on; a source that fails changes nothing.
fn read_environments(apps: &[Mounted], source: &EnvironmentSource) {
    let environments = match source() {
        Ok(environments) => environments,
        Err(e) => {
            let error = format!("{e:#}");
            tracing::error!(%error, "cannot read the environments again; keeping the running ones");
            return;
        }
    };
    for app in apps {
        let Some((_, env)) = environments.iter().find(|(path, _)| *path == app.path) else { continue };
        let mut current = crate::base::sync::lock(&app.env);
        if **current != env[..] {
            tracing::info!(component = %app.name, "environment changed: new instances get the new values");
            *current = env.as_slice().into();
        }
    }
}

/// Loads `app` again and, if it loads and starts on every reactor, routes
/// new connections to it.
async fn reload(app: &Mounted, loader: &Loader, services: &Services, isolation: Isolation) {
    match start(app, loader, services, isolation).await {
        Ok(workers) => {
            for (mount, worker) in app.mounts.iter().zip(workers) {
                mount.route.send_replace(worker);
            }
            services.metrics.component(&app.name).counts.reloads.inc();
            tracing::info!(
                component = %app.name,
                "reloaded: new connections go to the new version; open ones finish on the old"
            );
        }
        Err(e) => {
            services.metrics.component(&app.name).counts.reloads_refused.inc();
            let error = format!("{e:#}");
            tracing::error!(component = %app.name, %error, "reload refused; the running version keeps serving");
        }
    }
}

/// Compiles `app`'s file and starts a worker for it on every reactor.
async fn start(
    app: &Mounted,
    loader: &Loader,
    services: &Services,
    isolation: Isolation,
) -> anyhow::Result<Vec<Arc<Worker>>> {
    let (path, loader) = (app.path.clone(), loader.clone());
    // Compiling takes from milliseconds to seconds: off the control reactor.
    let compiled = tokio::task::spawn_blocking(move || loader.load(&path)).await??;
    let mut workers = Vec::with_capacity(app.mounts.len());
    for Mount { reactor, listeners, .. } in &app.mounts {
        let worker = Worker::new(
            compiled.clone(),
            app.name.clone(),
            crate::base::sync::lock(&app.env).clone(),
            services.clone(),
            isolation,
            listeners.clone(),
        );
        let worker = reactor.spawn(worker).await?;
        workers.push(worker.map_err(|e| anyhow::anyhow!("the new version failed to start: {e:#}"))?);
    }
    Ok(workers)
}

/// A file's size and modification time, as last seen.
#[derive(Debug, PartialEq, Clone, Copy)]
pub(super) struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let metadata = std::fs::metadata(path).ok()?;
        Some(Stamp { len: metadata.len(), modified: metadata.modified().ok() })
    }
}

/// What `--watch` knows of a file, or of files loaded together (a
/// certificate and its key).
#[derive(Debug)]
pub(super) struct Watched {
    /// The versions loaded last.
    loaded: Vec<Option<Stamp>>,
    /// What the previous look saw.
    seen: Vec<Option<Stamp>>,
}

impl Watched {
    fn new(path: &Path) -> Self {
        Self::all(std::slice::from_ref(&path.to_path_buf()))
    }

    /// Files that load together, as they are now.
    pub(super) fn all(paths: &[PathBuf]) -> Self {
        let now: Vec<_> = paths.iter().map(|path| Stamp::of(path)).collect();
        Watched { loaded: now.clone(), seen: now }
    }

    fn settled_change(&mut self, path: &Path) -> bool {
        self.all_settled_change(std::slice::from_ref(&path.to_path_buf()))
    }

    /// Whether a file differs from the version loaded and every one has held
    /// still since the previous look (so a file being written, or a
    /// certificate whose key is still to come, is not loaded half-way). A
    /// missing file is no change: it may be being replaced.
    pub(super) fn all_settled_change(&mut self, paths: &[PathBuf]) -> bool {
        let now: Vec<_> = paths.iter().map(|path| Stamp::of(path)).collect();
        let settled = now.iter().all(Option::is_some) && now == self.seen && now != self.loaded;
        if settled {
            self.loaded = now.clone();
        }
        self.seen = now;
        settled
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change is reported once, on the look after it stops changing.
    #[test]
    fn a_change_counts_once_it_holds_still() {
        let dir = std::env::temp_dir().join(format!("evconn-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("guest.wasm");
        std::fs::write(&path, b"one").unwrap();
        let mut watched = Watched::new(&path);
        assert!(!watched.settled_change(&path), "nothing changed");
        std::fs::write(&path, b"three").unwrap();
        assert!(!watched.settled_change(&path), "just changed: wait one look");
        assert!(watched.settled_change(&path), "held still: reload");
        assert!(!watched.settled_change(&path), "reported once");
        std::fs::remove_file(&path).unwrap();
        assert!(!watched.settled_change(&path), "a missing file is not a change");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
