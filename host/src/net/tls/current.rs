//! The TLS configuration a listener serves now: built from its files at
//! start, read by every handshake, and replaced by a reload only when every
//! file is good, so a bad new certificate never stops the old one serving.
use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::ServerConfig;

use super::{TlsError, TlsSettings};

/// One listener's TLS, reloadable. Shared by every worker's accept loop
/// and the reloader; a handshake takes [`TlsConfig::current`] once and
/// keeps it, so a reload never changes a handshake under way.
#[derive(Debug)]
pub struct TlsConfig {
    /// Where the files are; fixed for the host's life.
    settings: TlsSettings,
    /// What new handshakes use. The lock is held only to clone or replace
    /// the `Arc`, never across a handshake.
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsConfig {
    /// Reads every file `settings` names; refused if anything is wrong.
    pub fn load(settings: TlsSettings) -> Result<Arc<TlsConfig>, TlsError> {
        let current = RwLock::new(Arc::new(settings.server_config()?));
        Ok(Arc::new(TlsConfig { settings, current }))
    }

    /// The configuration for a new handshake: a clone of an `Arc`.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current.read().clone()
    }

    /// Reads every file again and serves the result from the next
    /// handshake on; if anything is wrong, keeps serving what it served.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(self.settings.server_config()?);
        *self.current.write() = fresh;
        Ok(())
    }

    /// Every file the configuration is read from, for `--watch`.
    pub fn files(&self) -> Vec<PathBuf> {
        self.settings.files()
    }

    /// The settings it was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::testing::{Pki, Scratch, handshake};

    /// A reload with good files serves the new certificate; one with a key
    /// that does not match is refused and the previous one keeps serving.
    #[test]
    fn reload_swaps_only_good_files() {
        let (pki, dir) = (Pki::new(), Scratch::new("reload"));
        let settings = pki.settings(&dir, "server", &["server.test"]);
        let config = TlsConfig::load(settings.clone()).unwrap();
        assert_eq!(config.files(), [settings.cert.clone(), settings.key.clone()]);
        let served = |config: &TlsConfig| {
            let (client, _) = handshake(&config.current(), pki.client().build(), "server.test").unwrap();
            client.peer_certificates().unwrap()[0].clone()
        };
        let first = served(&config);
        assert!(Arc::ptr_eq(&config.current(), &config.current()), "current() is the same until a reload");

        // The same label rewrites server.crt and server.key.
        let renewed = pki.settings(&dir, "server", &["server.test"]);
        assert_eq!(renewed, settings);
        config.reload().unwrap();
        let second = served(&config);
        assert_ne!(first, second, "a good reload serves the new certificate");
        assert_eq!(second, pki.served("server"));

        // A new certificate whose key has not been written yet.
        let keep = config.current();
        let other = pki.settings(&dir, "other", &["server.test"]);
        std::fs::copy(&other.cert, &settings.cert).unwrap();
        let error = config.reload().unwrap_err();
        assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
        assert!(Arc::ptr_eq(&keep, &config.current()), "a refused reload keeps the running configuration");
        assert_eq!(served(&config), second);
        std::fs::remove_file(&settings.key).unwrap();
        assert!(matches!(config.reload(), Err(TlsError::Missing { .. })));
        assert_eq!(served(&config), second);
    }
}
