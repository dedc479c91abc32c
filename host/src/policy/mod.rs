//! What the operator grants and how far it goes: the limits on guests and
//! peers, and the allow-lists a guest's requests are checked against on
//! every use. Plain data and checks; nothing here acts.
mod connect;
mod limits;

use std::net::SocketAddr;

pub use connect::{ConnectRule, ConnectTarget, valid_name};
pub use limits::Limits;

/// The operator's limits and grants for one host.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// What a guest or a peer may use.
    pub limits: Limits,
    /// Addresses a guest may bind; port 0 allows every port of that IP.
    /// Empty (the default): nothing.
    pub allow_bind: Vec<SocketAddr>,
    /// Where a guest may connect. Empty (the default): nowhere.
    pub allow_connect: Vec<ConnectRule>,
    /// The store buckets a guest may open. Empty (the default): one named
    /// after the guest's component.
    pub allow_bucket: Vec<String>,
}

impl Policy {
    /// Whether a guest may bind `address`.
    pub fn may_bind(&self, address: SocketAddr) -> bool {
        self.allow_bind
            .iter()
            .any(|allowed| allowed.ip() == address.ip() && (allowed.port() == 0 || allowed.port() == address.port()))
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
        let policy = Policy { allow_bind: vec![address("127.0.0.1:0"), address("[::1]:7000")], ..Policy::default() };
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
