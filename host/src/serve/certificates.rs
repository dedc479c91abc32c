//! Reloading the listeners' TLS certificates without a restart: all of them
//! on request (SIGHUP), and one whose files changed under `--watch`. Files
//! that do not load are refused, with a warning, and the certificates
//! already running keep serving; handshakes under way finish on them.
use std::path::PathBuf;
use std::sync::Arc;

use super::reload::Watched;
use crate::net::tls::TlsConfig;

/// Every listener's TLS configuration, each once, with what `--watch`
/// knows of its files.
pub(super) struct Certificates {
    configs: Vec<(Arc<TlsConfig>, Vec<PathBuf>, Watched)>,
}

impl Certificates {
    /// The configurations, each once however many listeners share it, and
    /// their files as they are now.
    pub(super) fn new(configs: impl IntoIterator<Item = Arc<TlsConfig>>) -> Self {
        let mut unique: Vec<(Arc<TlsConfig>, Vec<PathBuf>, Watched)> = Vec::new();
        for config in configs {
            if unique.iter().all(|(known, _, _)| !Arc::ptr_eq(known, &config)) {
                let files = config.files();
                let watched = Watched::all(&files);
                unique.push((config, files, watched));
            }
        }
        Certificates { configs: unique }
    }

    /// Reads every configuration's files again.
    pub(super) fn reload_all(&mut self) {
        for (config, files, watched) in &mut self.configs {
            *watched = Watched::all(files);
            reload(config);
        }
    }

    /// Reads again the configurations whose files changed and have held
    /// still since the previous look.
    pub(super) fn reload_changed(&mut self) {
        for (config, files, watched) in &mut self.configs {
            if watched.all_settled_change(files) {
                let cert = config.settings().cert.display();
                tracing::info!(%cert, "TLS files changed: reloading");
                reload(config);
            }
        }
    }
}

/// Reloads `config`, saying how it went.
fn reload(config: &TlsConfig) {
    let cert = config.settings().cert.display();
    match config.reload() {
        Ok(()) => tracing::info!(%cert, "TLS certificates reloaded: new handshakes use them"),
        Err(e) => {
            let error = e.to_string();
            tracing::warn!(%cert, %error, "TLS reload refused; the running certificates keep serving");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::net::tls::testing::{Pki, Scratch};

    /// Gives `path` a modification time of its own, as a later write would:
    /// the writes of a test may fall within one tick of the file clock.
    fn touch(path: &std::path::Path, seconds: u64) {
        let file = std::fs::File::options().write(true).open(path).unwrap();
        file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + seconds)).unwrap();
    }

    /// A shared configuration counts once; a request reloads it, and a
    /// bad set of files leaves the running one in place.
    #[test]
    fn a_request_reloads_every_configuration() {
        let (pki, dir) = (Pki::new(), Scratch::new("certificates"));
        let settings = pki.settings(&dir, "server", &["server.test"]);
        let config = TlsConfig::load(settings.clone()).unwrap();
        let mut certificates = Certificates::new([config.clone(), config.clone()]);
        assert_eq!(certificates.configs.len(), 1, "listeners sharing a configuration reload it once");

        let before = config.current();
        pki.settings(&dir, "server", &["server.test"]);
        certificates.reload_all();
        let renewed = config.current();
        assert!(!Arc::ptr_eq(&before, &renewed), "good files are served");

        std::fs::write(&settings.key, "").unwrap();
        certificates.reload_all();
        assert!(Arc::ptr_eq(&renewed, &config.current()), "a key file without a key is refused");
    }

    /// Under `--watch`, a configuration reloads once its changed files hold
    /// still, and not while one of them is still changing.
    #[test]
    fn changed_files_reload_once_settled() {
        let (pki, dir) = (Pki::new(), Scratch::new("certificates-watch"));
        let settings = pki.settings(&dir, "server", &["server.test"]);
        let config = TlsConfig::load(settings.clone()).unwrap();
        let mut certificates = Certificates::new([config.clone()]);
        let before = config.current();
        certificates.reload_changed();
        assert!(Arc::ptr_eq(&before, &config.current()), "nothing changed");

        pki.settings(&dir, "server", &["server.test"]);
        touch(&settings.cert, 1);
        touch(&settings.key, 1);
        certificates.reload_changed();
        assert!(Arc::ptr_eq(&before, &config.current()), "just written: wait one look");
        touch(&settings.key, 2);
        certificates.reload_changed();
        assert!(Arc::ptr_eq(&before, &config.current()), "the key is still changing");
        certificates.reload_changed();
        let after = config.current();
        assert!(!Arc::ptr_eq(&before, &after), "both held still: reloaded");
        certificates.reload_changed();
        assert!(Arc::ptr_eq(&after, &config.current()), "reloaded once");
    }
}
