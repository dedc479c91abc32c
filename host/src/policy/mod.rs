//! What the operator grants and how far it goes: the limits on guests and
//! peers, and the allow-lists a guest's requests are checked against on
//! every use. Plain data and checks; nothing here acts.
mod bind;
mod connect;
mod limits;

use std::net::SocketAddr;
use std::path::Path;

pub use bind::{BindAddress, UNIX_PATH_MAX, unix_path};
pub use connect::{ConnectRule, ConnectTarget, valid_name};
pub use limits::Limits;

/// The operator's limits and grants for one host.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// What a guest or a peer may use.
    pub limits: Limits,
    /// Addresses a guest may bind; port 0 allows every port of that IP; a
    /// Unix path allows that path alone. Empty (the default): nothing.
    pub allow_bind: Vec<BindAddress>,
    /// Where a guest may connect. Empty (the default): nowhere.
    pub allow_connect: Vec<ConnectRule>,
    /// The store buckets a guest may open. Empty (the default): one named
    /// after the guest's component.
    pub allow_bucket: Vec<String>,
}

impl Policy {
    /// Whether a guest may bind `address`.
    pub fn may_bind(&self, address: SocketAddr) -> bool {
        self.allow_bind.iter().any(|allowed| match allowed {
            BindAddress::Ip(allowed) => {
                allowed.ip() == address.ip() && (allowed.port() == 0 || allowed.port() == address.port())
            }
            BindAddress::Unix(_) => false,
        })
    }

    /// Whether a guest may bind a Unix socket at `path`: exactly as the
    /// operator wrote it, so that no `..` or link leads elsewhere.
    pub fn may_bind_unix(&self, path: &Path) -> bool {
        self.allow_bind.iter().any(|allowed| matches!(allowed, BindAddress::Unix(allowed) if allowed == path))
    }

    /// Whether a guest may connect to `address`.
    pub fn may_connect(&self, address: SocketAddr) -> bool {
        self.allow_connect.iter().any(|rule| rule.allows_address(address))
    }

    /// Whether a guest of `component` may open the store's bucket `name`.
    pub fn may_open_bucket(&self, component: &str, name: &str) -> bool {
        if self.allow_bucket.is_empty() {
            return name == component;
        }
        self.allow_bucket.iter().any(|allowed| allowed == name)
    }

    /// Whether a guest may ask the host to resolve `name` and connect to
    /// `port` of it (each address it resolves to is checked again).
    pub fn may_connect_name(&self, name: &str, port: u16) -> bool {
        self.allow_connect.iter().any(|rule| rule.allows_name(name, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing is bindable by default; port 0 allows every port of its IP
    /// and no other IP.
    #[test]
    fn binds_only_what_is_allowed() {
        let address = |text: &str| text.parse::<SocketAddr>().unwrap();
        assert!(!Policy::default().may_bind(address("127.0.0.1:8080")));
        let allow_bind =
            vec![address("127.0.0.1:0").into(), address("[::1]:7000").into(), "unix:/run/a.sock".parse().unwrap()];
        let policy = Policy { allow_bind, ..Policy::default() };
        assert!(policy.may_bind_unix(Path::new("/run/a.sock")));
        assert!(!policy.may_bind_unix(Path::new("/run/b.sock")));
        assert!(!policy.may_bind_unix(Path::new("/run/../run/a.sock")));
        assert!(policy.may_bind(address("127.0.0.1:8080")));
        assert!(policy.may_bind(address("[::1]:7000")));
        assert!(!policy.may_bind(address("[::1]:7001")));
        assert!(!policy.may_bind(address("0.0.0.0:8080")));
    }

    /// A component may open the bucket named after it, unless the operator
    /// lists the buckets: then those alone.
    #[test]
    fn opens_only_allowed_buckets() {
        let default = Policy::default();
        assert!(default.may_open_bucket("kv", "kv"));
        assert!(!default.may_open_bucket("kv", "other"));
        let listed = Policy { allow_bucket: vec!["shared".into(), "limits".into()], ..Policy::default() };
        assert!(listed.may_open_bucket("kv", "shared"));
        assert!(listed.may_open_bucket("echo", "limits"));
        assert!(!listed.may_open_bucket("kv", "kv"));
    }
}
