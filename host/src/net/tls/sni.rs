//! Picks the certificate a handshake presents by the name the client asks
//! for (SNI): an exact name first, then a `*.example.com` wildcard (one
//! label deep, as RFC 6125 has it), then the listener's default certificate,
//! which also serves clients that send no name.
use std::collections::HashMap;
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::DnsName;

use super::TlsError;

/// The listener's certificates by the names they serve.
#[derive(Debug)]
pub(super) struct SniResolver {
    /// For no name and names nobody else serves: `--tls-cert`.
    default: Arc<CertifiedKey>,
    /// By name, lowercase.
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By what follows `*.`, lowercase.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
}

impl SniResolver {
    pub(super) fn new(default: Arc<CertifiedKey>) -> Self {
        SniResolver { default, exact: HashMap::new(), wildcard: HashMap::new() }
    }

    /// Serves `name` (checked with [`check_sni_name`]) with `key`; a name
    /// given twice is refused, as one of the two entries would never serve.
    pub(super) fn add(&mut self, name: &str, key: Arc<CertifiedKey>) -> Result<(), TlsError> {
        check_sni_name(name)?;
        let name = name.to_ascii_lowercase();
        let (map, key_name) = match name.strip_prefix("*.") {
            Some(parent) => (&mut self.wildcard, parent.to_string()),
            None => (&mut self.exact, name.clone()),
        };
        if map.insert(key_name, key).is_some() {
            return Err(TlsError::SniName { name, reason: "two SNI entries name it" });
        }
        Ok(())
    }

    /// The certificate for a client that asked for `name`.
    fn pick(&self, name: Option<&str>) -> &Arc<CertifiedKey> {
        let Some(name) = name else { return &self.default };
        let name = name.to_ascii_lowercase();
        if let Some(key) = self.exact.get(&name) {
            return key;
        }
        name.split_once('.').and_then(|(_, parent)| self.wildcard.get(parent)).unwrap_or(&self.default)
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(client_hello.server_name()).clone())
    }
}

/// Checks a name an SNI entry serves: a DNS name (`a.example.com`), or a
/// wildcard over one label (`*.example.com`); not an IP address, which
/// clients never send as SNI.
pub fn check_sni_name(name: &str) -> Result<(), TlsError> {
    let refuse = |reason| Err(TlsError::SniName { name: name.to_string(), reason });
    let base = name.strip_prefix("*.").unwrap_or(name);
    if base.contains('*') {
        return refuse("a wildcard must be `*.` followed by a name, such as *.example.com");
    }
    if base.parse::<std::net::IpAddr>().is_ok() {
        return refuse("clients send host names as SNI, never IP addresses");
    }
    if DnsName::try_from(base).is_err() {
        return refuse("not a DNS name");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::tls::testing::Pki;

    /// Exact names win over wildcards, wildcards cover one label, case does
    /// not matter, and everything else gets the default.
    #[test]
    fn picks_by_name() {
        let pki = Pki::new();
        let [default, exact, wild] = ["default.test", "a.example.test", "*.example.test"].map(|name| pki.key(name));
        let mut resolver = SniResolver::new(default.clone());
        resolver.add("A.example.test", exact.clone()).unwrap();
        resolver.add("*.example.test", wild.clone()).unwrap();
        let picked = |name| resolver.pick(name).clone();
        assert!(Arc::ptr_eq(&picked(Some("a.example.test")), &exact));
        assert!(Arc::ptr_eq(&picked(Some("A.EXAMPLE.test")), &exact));
        assert!(Arc::ptr_eq(&picked(Some("b.example.test")), &wild));
        assert!(Arc::ptr_eq(&picked(Some("c.b.example.test")), &default), "a wildcard covers one label");
        assert!(Arc::ptr_eq(&picked(Some("example.test")), &default));
        assert!(Arc::ptr_eq(&picked(None), &default));
        let error = resolver.add("a.example.test", wild).unwrap_err().to_string();
        assert!(error.contains("two SNI entries"), "{error}");
    }

    /// Names a client could not send are refused with the reason.
    #[test]
    fn checks_names() {
        for good in ["a.test", "*.example.com", "xn--bcher-kva.example"] {
            check_sni_name(good).unwrap();
        }
        for (bad, reason) in [
            ("a.*.test", "wildcard"),
            ("*a.test", "wildcard"),
            ("127.0.0.1", "IP addresses"),
            ("", "not a DNS name"),
            ("a b.test", "not a DNS name"),
        ] {
            let error = check_sni_name(bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
    }
}
