//! The config file (`host --config evconn.toml`): several listeners, each
//! with its own component and options, and the host's settings. Keys are the
//! flags' names; an unknown key or a bad value is an error that quotes the
//! line it is on.
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Deserializer, de::Error as _};

use super::HostFlags;
use super::parse::{
    check_connections, check_env_key, check_workers, parse_alpn, parse_bucket, parse_listen_address,
    parse_listen_option, parse_unix_mode, parse_unix_owner,
};
use super::plan::{InheritedSockets, ListenerPlan, Plan};
use crate::base::units::{parse_duration, parse_size};
use crate::net::tls::{SniCertificate, TlsSettings, check_sni_name};
use crate::net::{ListenOptions, UnixPermissions, ZeroBacklog};
use crate::policy::{BindAddress, ConnectRule};
use crate::store::Backend;
use crate::wasm::Isolation;

/// The file's top level: settings of the whole host, then `[[listener]]`s.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct File {
    cache_dir: Option<PathBuf>,
    no_cache: Option<bool>,
    allow_precompiled: Option<bool>,
    #[serde(default, deserialize_with = "bind_addresses")]
    allow_bind: Option<Vec<BindAddress>>,
    #[serde(default, deserialize_with = "connect_rules")]
    allow_connect: Option<Vec<ConnectRule>>,
    #[serde(default, deserialize_with = "backend")]
    keyvalue: Option<Backend>,
    #[serde(default, deserialize_with = "buckets")]
    allow_bucket: Option<Vec<String>>,
    keyvalue_keys: Option<usize>,
    #[serde(default, deserialize_with = "size")]
    keyvalue_memory: Option<usize>,
    isolation: Option<Isolation>,
    #[serde(default, deserialize_with = "duration")]
    guest_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "size")]
    guest_memory: Option<usize>,
    #[serde(default, deserialize_with = "connections")]
    max_connections: Option<u32>,
    #[serde(default, deserialize_with = "size")]
    write_buffer: Option<usize>,
    #[serde(default, deserialize_with = "size")]
    output_cap: Option<usize>,
    #[serde(default, deserialize_with = "size")]
    output_memory: Option<usize>,
    max_timers: Option<usize>,
    max_outbound: Option<usize>,
    max_outbound_per_instance: Option<usize>,
    #[serde(default, deserialize_with = "duration")]
    connect_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    idle_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "worker_count")]
    workers: Option<u16>,
    watch: Option<bool>,
    #[serde(default, deserialize_with = "metrics_address")]
    metrics: Option<SocketAddr>,
    #[serde(default, deserialize_with = "duration")]
    shutdown_timeout: Option<Duration>,
    #[serde(default, deserialize_with = "duration")]
    tls_handshake_timeout: Option<Duration>,
    #[serde(rename = "listener", default)]
    listeners: Vec<Entry>,
}

/// One `[[listener]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Entry {
    /// Relative to the config file's folder.
    component: PathBuf,
    #[serde(default, deserialize_with = "listen_addresses")]
    listen: Vec<BindAddress>,
    /// Names of sockets systemd passes (`FileDescriptorName=`).
    inherited: Option<Vec<String>>,
    #[serde(default, deserialize_with = "listen_options")]
    options: Option<ListenOptions>,
    #[serde(default, deserialize_with = "backlog")]
    backlog: Option<i32>,
    /// The environment its component's instances get.
    #[serde(default, deserialize_with = "environment")]
    env: BTreeMap<String, String>,
    /// TLS on every socket of the listener.
    tls: Option<TlsEntry>,
    /// The mode of its Unix sockets' files, in octal.
    #[serde(default, deserialize_with = "unix_mode")]
    unix_mode: Option<u32>,
    /// The owner of its Unix sockets' files.
    #[serde(default, deserialize_with = "unix_owner")]
    unix_owner: Option<(Option<u32>, Option<u32>)>,
}

/// A listener's `tls` table; paths are relative to the config file's folder.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct TlsEntry {
    cert: PathBuf,
    key: PathBuf,
    #[serde(default, deserialize_with = "alpn_protocols")]
    alpn: Vec<String>,
    client_ca: Option<PathBuf>,
    #[serde(default)]
    sni: Vec<SniEntry>,
}

/// One of a `tls` table's `sni` certificates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct SniEntry {
    #[serde(deserialize_with = "sni_names")]
    names: Vec<String>,
    cert: PathBuf,
    key: PathBuf,
}

impl TlsEntry {
    /// The settings, with paths taken from `dir`.
    fn settings(self, dir: &Path) -> TlsSettings {
        let sni = (self.sni.into_iter())
            .map(|entry| SniCertificate { names: entry.names, cert: dir.join(entry.cert), key: dir.join(entry.key) })
            .collect();
        TlsSettings {
            cert: dir.join(self.cert),
            key: dir.join(self.key),
            alpn: self.alpn,
            client_ca: self.client_ca.map(|ca| dir.join(ca)),
            sni,
        }
    }
}

/// Reads the config file at `path` into a plan.
pub fn read(path: &Path) -> anyhow::Result<Plan> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.to_string().trim_end()))
}

/// Parses a config file's text; relative component paths are taken from `dir`.
fn parse(text: &str, dir: &Path) -> Result<Plan, toml::de::Error> {
    let file: File = toml::from_str(text)?;
    if file.listeners.is_empty() {
        return Err(toml::de::Error::custom("no [[listener]]: nothing to serve"));
    }
    let mut host = HostFlags::default();
    host.cache.cache_dir = file.cache_dir.map(|d| dir.join(d)).or(host.cache.cache_dir);
    set(&mut host.cache.no_cache, file.no_cache);
    set(&mut host.cache.allow_precompiled, file.allow_precompiled);
    set(&mut host.allow_bind, file.allow_bind);
    set(&mut host.allow_connect, file.allow_connect);
    set(&mut host.keyvalue, file.keyvalue);
    set(&mut host.allow_bucket, file.allow_bucket);
    set(&mut host.limits.keyvalue_keys, file.keyvalue_keys);
    set(&mut host.limits.keyvalue_memory, file.keyvalue_memory);
    set(&mut host.limits.isolation, file.isolation);
    set(&mut host.limits.guest_timeout, file.guest_timeout);
    set(&mut host.limits.guest_memory, file.guest_memory);
    host.limits.max_connections = file.max_connections.or(host.limits.max_connections);
    set(&mut host.limits.write_buffer, file.write_buffer);
    host.limits.output_cap = file.output_cap.or(host.limits.output_cap);
    set(&mut host.limits.output_memory, file.output_memory);
    set(&mut host.limits.max_timers, file.max_timers);
    set(&mut host.limits.max_outbound, file.max_outbound);
    host.limits.max_outbound_per_instance = file.max_outbound_per_instance.or(host.limits.max_outbound_per_instance);
    set(&mut host.limits.connect_timeout, file.connect_timeout);
    set(&mut host.limits.idle_timeout, file.idle_timeout);
    set(&mut host.workers, file.workers);
    set(&mut host.watch, file.watch);
    host.metrics = file.metrics.or(host.metrics);
    set(&mut host.shutdown_timeout, file.shutdown_timeout);
    set(&mut host.tls_handshake_timeout, file.tls_handshake_timeout);

    // A lone listener serves every inherited socket unless it names some,
    // as the command line does.
    let only_one = file.listeners.len() == 1;
    let listeners = file
        .listeners
        .into_iter()
        .map(|entry| ListenerPlan {
            component: dir.join(entry.component),
            // Relative socket paths, like component paths, from the file's folder.
            addresses: (entry.listen.into_iter())
                .map(|address| match address {
                    BindAddress::Unix(path) => BindAddress::Unix(dir.join(path)),
                    ip => ip,
                })
                .collect(),
            unix: UnixPermissions {
                mode: entry.unix_mode,
                uid: entry.unix_owner.and_then(|owner| owner.0),
                gid: entry.unix_owner.and_then(|owner| owner.1),
            },
            inherited: match entry.inherited {
                None if only_one => InheritedSockets::All,
                names => InheritedSockets::Named(names.unwrap_or_default()),
            },
            fallback: None,
            options: entry.options.unwrap_or(ListenOptions::DEFAULT),
            backlog: entry.backlog.unwrap_or(-1),
            env: entry.env.into_iter().collect(),
            tls: entry.tls.map(|tls| tls.settings(dir)),
        })
        .collect();
    Ok(Plan { host, listeners })
}

/// Overrides a default with a value the file gives.
fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    parse_duration(&String::deserialize(d)?).map(Some).map_err(D::Error::custom)
}

/// A size: bytes as a number, or a string such as "64M".
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(usize),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Bytes(bytes) => Ok(Some(bytes)),
        Size::Text(text) => parse_size(&text).map(Some).map_err(D::Error::custom),
    }
}

fn connections<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    check_connections(u32::deserialize(d)?).map(Some).map_err(D::Error::custom)
}

fn unix_mode<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    parse_unix_mode(&String::deserialize(d)?).map(Some).map_err(D::Error::custom)
}

#[allow(clippy::type_complexity)]
fn unix_owner<'de, D: Deserializer<'de>>(d: D) -> Result<Option<(Option<u32>, Option<u32>)>, D::Error> {
    parse_unix_owner(&String::deserialize(d)?).map(Some).map_err(D::Error::custom)
}

fn backlog<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i32>, D::Error> {
    match i32::deserialize(d)? {
        0 => Err(D::Error::custom(format!("backlog 0: {ZeroBacklog}"))),
        n => Ok(Some(n)),
    }
}

fn worker_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    check_workers(u16::deserialize(d)?).map(Some).map_err(D::Error::custom)
}

fn listen_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<BindAddress>, D::Error> {
    Vec::<String>::deserialize(d)?.iter().map(|a| BindAddress::parse(a, false).map_err(D::Error::custom)).collect()
}

fn metrics_address<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    parse_listen_address(&String::deserialize(d)?).map(Some).map_err(D::Error::custom)
}

fn bind_addresses<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<BindAddress>>, D::Error> {
    let addresses = Vec::<String>::deserialize(d)?;
    addresses.iter().map(|a| a.parse().map_err(D::Error::custom)).collect::<Result<_, _>>().map(Some)
}

fn connect_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<ConnectRule>>, D::Error> {
    let rules = Vec::<String>::deserialize(d)?;
    rules.iter().map(|rule| rule.parse().map_err(D::Error::custom)).collect::<Result<_, _>>().map(Some)
}

fn backend<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Backend>, D::Error> {
    String::deserialize(d)?.parse().map(Some).map_err(D::Error::custom)
}

fn buckets<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names.iter().map(|name| parse_bucket(name).map_err(D::Error::custom)).collect::<Result<_, _>>().map(Some)
}

fn environment<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let env = BTreeMap::<String, String>::deserialize(d)?;
    for (key, value) in &env {
        check_env_key(key).map_err(D::Error::custom)?;
        if value.contains('\0') {
            return Err(D::Error::custom(format!("the value of {key} holds a NUL byte")));
        }
    }
    Ok(env)
}

fn alpn_protocols<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let protocols = Vec::<String>::deserialize(d)?;
    protocols.iter().map(|protocol| parse_alpn(protocol).map_err(D::Error::custom)).collect()
}

fn sni_names<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    if names.is_empty() {
        return Err(D::Error::custom("an SNI entry needs at least one name"));
    }
    for name in &names {
        check_sni_name(name).map_err(D::Error::custom)?;
    }
    Ok(names)
}

fn listen_options<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ListenOptions>, D::Error> {
    let names = Vec::<String>::deserialize(d)?;
    names
        .iter()
        .try_fold(ListenOptions::empty(), |all, name| Ok(all | parse_listen_option(name).map_err(D::Error::custom)?))
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
workers = 2
metrics = "127.0.0.1:9100"
guest-timeout = "500ms"
guest-memory = "16M"
write-buffer = 65536
allow-bind = ["127.0.0.1:0"]
allow-connect = ["127.0.0.1:6379", "db.internal:5432-5433"]
connect-timeout = "2s"
max-outbound = 100
max-outbound-per-instance = 10
allow-precompiled = true
keyvalue = "redis://127.0.0.1:6379/2"
allow-bucket = ["kv", "rate-limit"]
keyvalue-keys = 5000
keyvalue-memory = "8M"
tls-handshake-timeout = "3s"

[[listener]]
component = "echo.wasm"
listen = ["127.0.0.1:9876", "[::1]:9876"]
options = ["reuseable", "close-on-free", "disabled"]
backlog = 64

[[listener]]
component = "/srv/kv.wasm"
inherited = ["kv"]
env = { BACKEND = "127.0.0.1:6379", MODE = "a=b" }
tls = { cert = "tls/kv.crt", key = "/keys/kv.key", alpn = ["h2", "http/1.1"], client-ca = "ca.pem", sni = [
    { names = ["a.test", "*.b.test"], cert = "a.crt", key = "a.key" },
] }
"#;

    /// Every key lands where the flags would put it; paths are relative to
    /// the file; unset keys keep the flags' defaults.
    #[test]
    fn reads_settings_and_listeners() {
        let plan = parse(EXAMPLE, Path::new("/etc/evconn")).unwrap();
        assert_eq!(plan.host.workers, 2);
        assert_eq!(plan.host.metrics, Some("127.0.0.1:9100".parse().unwrap()));
        assert_eq!(plan.host.limits.guest_timeout, Duration::from_millis(500));
        assert_eq!(plan.host.limits.guest_memory, 16 << 20);
        assert_eq!(plan.host.limits.write_buffer, 65536);
        assert_eq!(plan.host.allow_bind, ["127.0.0.1:0".parse().unwrap()]);
        assert!(plan.host.cache.allow_precompiled);
        assert!(!HostFlags::default().cache.allow_precompiled, "machine code is refused by default");
        assert_eq!(plan.host.shutdown_timeout, HostFlags::default().shutdown_timeout);
        assert_eq!(plan.host.limits.isolation, Isolation::Shared);
        let [echo, kv] = &plan.listeners[..] else { panic!("two listeners") };
        assert_eq!(echo.component, Path::new("/etc/evconn/echo.wasm"));
        assert_eq!(echo.addresses, ["127.0.0.1:9876".parse().unwrap(), "[::1]:9876".parse().unwrap()]);
        assert_eq!(echo.options, ListenOptions::REUSEABLE | ListenOptions::CLOSE_ON_FREE | ListenOptions::DISABLED);
        assert_eq!(echo.backlog, 64);
        assert_eq!(echo.inherited, InheritedSockets::Named(vec![]));
        assert_eq!(kv.component, Path::new("/srv/kv.wasm"));
        assert_eq!(kv.inherited, InheritedSockets::Named(vec!["kv".into()]));
        let rules: Vec<String> = plan.host.allow_connect.iter().map(ToString::to_string).collect();
        assert_eq!(rules, ["127.0.0.1:6379", "db.internal:5432-5433"]);
        assert_eq!(plan.host.limits.connect_timeout, Duration::from_secs(2));
        assert_eq!((plan.host.limits.max_outbound, plan.host.limits.max_outbound_per_instance), (100, Some(10)));
        assert_eq!(plan.host.keyvalue, Backend::Redis("redis://127.0.0.1:6379/2".into()));
        assert_eq!(plan.host.allow_bucket, ["kv", "rate-limit"]);
        assert_eq!((plan.host.limits.keyvalue_keys, plan.host.limits.keyvalue_memory), (5000, 8 << 20));
        assert_eq!(HostFlags::default().keyvalue, Backend::Memory);
        assert!(echo.env.is_empty());
        assert_eq!(echo.tls, None);
        assert_eq!(plan.host.tls_handshake_timeout, Duration::from_secs(3));
        assert_eq!(HostFlags::default().tls_handshake_timeout, Duration::from_secs(10));
        let tls = kv.tls.as_ref().expect("kv serves TLS");
        assert_eq!(
            (tls.cert.as_path(), tls.key.as_path()),
            (Path::new("/etc/evconn/tls/kv.crt"), Path::new("/keys/kv.key"))
        );
        assert_eq!(tls.alpn, ["h2", "http/1.1"]);
        assert_eq!(tls.client_ca.as_deref(), Some(Path::new("/etc/evconn/ca.pem")));
        let sni = SniCertificate {
            names: vec!["a.test".into(), "*.b.test".into()],
            cert: "/etc/evconn/a.crt".into(),
            key: "/etc/evconn/a.key".into(),
        };
        assert_eq!(tls.sni, [sni]);
        let env = [("BACKEND".to_string(), "127.0.0.1:6379".to_string()), ("MODE".into(), "a=b".into())];
        assert_eq!(kv.env, env);
    }

    const TLS_SNI_WILDCARD: &str = "[[listener]]\ncomponent = \"a.wasm\"\n[listener.tls]\ncert = \"c\"\nkey = \"k\"\nsni = [{ names = [\"a.*.test\"], cert = \"c\", key = \"k\" }]\n";
    const TLS_SNI_EMPTY: &str = "[[listener]]\ncomponent = \"a.wasm\"\n[listener.tls]\ncert = \"c\"\nkey = \"k\"\nsni = [{ names = [], cert = \"c\", key = \"k\" }]\n";

    /// Unknown keys and bad values are refused with the line they are on.
    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("workers = 2\nwokers = 3\n[[listener]]\ncomponent = \"a.wasm\"\n", 2, "unknown field `wokers`"),
            ("[[listener]]\ncomponent = \"a.wasm\"\nlisten = [\"127.0.0.1:0\"]\n", 3, "Invalid port"),
            ("[[listener]]\ncomponent = \"a.wasm\"\noptions = [\"fast\"]\n", 3, "unknown listener option"),
            ("guest-timeout = \"soon\"\n[[listener]]\ncomponent = \"a.wasm\"\n", 1, "not a duration"),
            ("workers = 0\n[[listener]]\ncomponent = \"a.wasm\"\n", 1, "give 1 to 256"),
            ("[[listener]]\ncomponent = \"a.wasm\"\nport = 80\n", 3, "unknown field `port`"),
            ("[[listener]]\ncomponent = \"a.wasm\"\nbacklog = 0\n", 3, "backlog 0"),
            ("allow-connect = [\"10.0.0.1\"]\n[[listener]]\ncomponent = \"a.wasm\"\n", 1, "expected HOST:PORTS"),
            ("keyvalue = \"mysql://x\"\n[[listener]]\ncomponent = \"a.wasm\"\n", 1, "redis://HOST:PORT"),
            ("allow-bucket = [\"a:b\"]\n[[listener]]\ncomponent = \"a.wasm\"\n", 1, "not a bucket name"),
            ("[[listener]]\ncomponent = \"a.wasm\"\nenv = { \"\" = \"x\" }\n", 3, "not an environment variable name"),
            ("[[listener]]\ncomponent = \"a.wasm\"\ntls = { cert = \"c.pem\" }\n", 3, "missing field `key`"),
            (
                "[[listener]]\ncomponent = \"a.wasm\"\ntls = { cert = \"c\", key = \"k\", ca = \"x\" }\n",
                3,
                "unknown field `ca`",
            ),
            ("[[listener]]\ncomponent = \"a.wasm\"\ntls = { cert = \"c\", key = \"k\", alpn = [\"\"] }\n", 3, "ALPN"),
            (TLS_SNI_WILDCARD, 6, "a wildcard must be"),
            (TLS_SNI_EMPTY, 6, "at least one name"),
            ("tls-handshake-timeout = \"soon\"\n[[listener]]\ncomponent = \"a.wasm\"\n", 1, "not a duration"),
        ];
        for (text, line, reason) in cases {
            let error = parse(text, Path::new(".")).unwrap_err().to_string();
            assert!(error.contains(&format!("line {line}")), "{text:?} should fail on line {line}: {error}");
            assert!(error.contains(reason), "{text:?}: {error}");
        }
        let error = parse("workers = 1\n", Path::new(".")).unwrap_err().to_string();
        assert!(error.contains("no [[listener]]"), "{error}");
    }

    /// A lone listener takes every inherited socket unless it names some.
    #[test]
    fn a_lone_listener_takes_every_inherited_socket() {
        let plan = parse("[[listener]]\ncomponent = \"a.wasm\"\n", Path::new(".")).unwrap();
        assert_eq!(plan.listeners[0].inherited, InheritedSockets::All);
    }
}
