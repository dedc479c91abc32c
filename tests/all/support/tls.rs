//! TLS for the tests: certificates made at run time in a scratch folder, a
//! rustls client over a real socket, and `openssl s_client` driven as a
//! child process.
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A folder of its own under the system's temporary folder, removed on
/// drop: keys and certificates never land in the source tree.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let unique = format!("evconn-tls-{label}-{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(unique);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `name` in the folder, in one step (beside, then
    /// renamed) so that a watching host never reads half a file: its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        let beside = self.0.join(format!("{name}.partial"));
        std::fs::write(&beside, text).unwrap();
        std::fs::rename(&beside, &path).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A certificate and its key, as PEM text and as rustls takes them.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Issued {
    /// Writes the certificate to `LABEL.crt` and the key to `LABEL.key` in
    /// `dir`: their paths.
    pub fn write(&self, dir: &Scratch, label: &str) -> (PathBuf, PathBuf) {
        (dir.write(&format!("{label}.crt"), &self.cert_pem), dir.write(&format!("{label}.key"), &self.key_pem))
    }
}

/// A test CA, its certificate written to `NAME-ca.crt` in the scratch
/// folder.
pub struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
    pub ca_file: PathBuf,
}

impl Pki {
    pub fn new(dir: &Scratch, name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, format!("evconn {name} CA"));
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let ca_file = dir.write(&format!("{name}-ca.crt"), &ca.pem());
        Pki { ca, ca_file }
    }

    /// A server certificate for `names` (host names or IP addresses), its
    /// subject `CN=common_name`.
    pub fn server(&self, common_name: &str, names: &[&str]) -> Issued {
        self.issue(&[(DnType::CommonName, common_name)], names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with the subject `subject`, given most general
    /// first as it is stored (RFC 4514 writes it the other way round).
    pub fn client(&self, subject: &[(DnType, &str)]) -> Issued {
        self.issue(subject, &[], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(&self, subject: &[(DnType, &str)], names: &[&str], usage: ExtendedKeyUsagePurpose) -> Issued {
        let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &self.ca).unwrap();
        Issued {
            cert_pem: certificate.pem(),
            key_pem: key.serialize_pem(),
            der: certificate.der().clone(),
            key_der: key.serialize_der(),
        }
    }

    /// A rustls client that trusts this CA, speaks TLS 1.3 and 1.2, and
    /// presents `identity` if given.
    pub fn client_config(&self, identity: Option<&Issued>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match identity {
            Some(issued) => {
                let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(issued.key_der.clone()));
                builder.with_client_auth_cert(vec![issued.der.clone()], key).unwrap()
            }
            None => builder.with_no_client_auth(),
        })
    }
}

/// A rustls client on a real TCP connection, its handshake finished.
pub struct TlsClient {
    pub stream: StreamOwned<ClientConnection, TcpStream>,
}

impl TlsClient {
    /// Connects to `addr` asking for `name`, and finishes the handshake
    /// (every wait bounded by 10 s).
    pub fn connect(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> io::Result<Self> {
        let (socket, session) = start(addr, config, name)?;
        let mut stream = StreamOwned::new(session, socket);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsClient { stream })
    }

    /// As `connect`, but `first` goes out in the same write as the
    /// client's `Finished` message, as a TLS 1.3 client that has data
    /// waiting sends it: the server reads both at once.
    pub fn connect_sending(addr: SocketAddr, config: Arc<ClientConfig>, name: &str, first: &[u8]) -> io::Result<Self> {
        let (mut socket, mut session) = start(addr, config, name)?;
        // The ClientHello; then the server's flight, until rustls has
        // queued its Finished (and ends the handshake on its side).
        while session.wants_write() {
            session.write_tls(&mut socket)?;
        }
        while session.is_handshaking() && !session.wants_write() {
            if session.read_tls(&mut socket)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            session.process_new_packets().map_err(io::Error::other)?;
        }
        assert!(!session.is_handshaking(), "a TLS 1.3 client finishes on the server's flight");
        session.writer().write_all(first)?;
        // One buffer of records, Finished first: one write to the socket.
        let mut records = Vec::new();
        while session.wants_write() {
            session.write_tls(&mut records)?;
        }
        socket.write_all(&records)?;
        Ok(TlsClient { stream: StreamOwned::new(session, socket) })
    }

    /// The certificate the server presented.
    pub fn server_certificate(&self) -> CertificateDer<'static> {
        self.stream.conn.peer_certificates().expect("a finished handshake")[0].clone()
    }

    /// Writes `message` and reads as many bytes back; the bytes read.
    pub fn exchange(&mut self, message: &[u8]) -> io::Result<Vec<u8>> {
        self.stream.write_all(message)?;
        self.stream.flush()?;
        let mut answer = vec![0u8; message.len()];
        self.stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    /// Writes `message` and reads one line back, without its newline.
    pub fn ask(&mut self, message: &str) -> io::Result<String> {
        self.stream.write_all(format!("{message}\n").as_bytes())?;
        self.stream.flush()?;
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        while byte[0] != b'\n' {
            if self.stream.read(&mut byte)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            line.push(byte[0]);
        }
        line.pop();
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

/// A connection to `addr` (every wait bounded by 10 s) and a client
/// session asking for `name`, before its handshake.
fn start(addr: SocketAddr, config: Arc<ClientConfig>, name: &str) -> io::Result<(TcpStream, ClientConnection)> {
    let socket = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    socket.set_read_timeout(Some(Duration::from_secs(10)))?;
    socket.set_write_timeout(Some(Duration::from_secs(10)))?;
    let name = ServerName::try_from(name.to_string()).map_err(io::Error::other)?;
    Ok((socket, ClientConnection::new(config, name).map_err(io::Error::other)?))
}

/// What a child process printed so far, and a signal for more.
type Collected = Arc<(Mutex<Vec<u8>>, Condvar)>;

/// `openssl s_client` as a child process: the test writes its input and
/// reads what it printed while it runs. Killed on drop.
pub struct SClient {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Collected,
    stderr: Collected,
}

/// How an `s_client` run ended.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl SClient {
    /// Starts `openssl s_client ARGS`.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new("openssl")
            .arg("s_client")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("openssl does not run ({e}): scripts/setup installs it"));
        let collect = |mut stream: Box<dyn Read + Send>| {
            let collected: Collected = Arc::default();
            let sink = collected.clone();
            std::thread::spawn(move || {
                let mut buffer = [0u8; 64 << 10];
                while let Ok(n @ 1..) = stream.read(&mut buffer) {
                    sink.0.lock().unwrap().extend_from_slice(&buffer[..n]);
                    sink.1.notify_all();
                }
            });
            collected
        };
        let stdout = collect(Box::new(child.stdout.take().unwrap()));
        let stderr = collect(Box::new(child.stderr.take().unwrap()));
        SClient { stdin: child.stdin.take(), child, stdout, stderr }
    }

    /// Writes `bytes` to its input.
    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let stdin = self.stdin.as_mut().expect("input still open");
        stdin.write_all(bytes)?;
        stdin.flush()
    }

    /// Ends its input: without `-ign_eof` (or `-quiet`), `s_client` then
    /// sends `close_notify` and exits.
    pub fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Waits until what it printed on standard output holds `ready`;
    /// whether it did within `timeout`.
    pub fn wait_for_output(&self, timeout: Duration, ready: impl Fn(&[u8]) -> bool) -> bool {
        wait_for(&self.stdout, timeout, ready)
    }

    /// What it printed on standard output so far.
    pub fn stdout(&self) -> Vec<u8> {
        self.stdout.0.lock().unwrap().clone()
    }

    /// What it printed on standard error so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.0.lock().unwrap()).into_owned()
    }

    /// Waits for it to exit, its input left as it is; fails the test if it
    /// runs longer than `timeout`.
    pub fn finish(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "s_client ran over {timeout:?}; stderr:\n{}", self.stderr());
            std::thread::sleep(Duration::from_millis(10));
        };
        // The readers take the last of the pipes once it has exited.
        let drained = |collected: &Collected| {
            let last = collected.0.lock().unwrap().len();
            wait_for(collected, Duration::from_millis(100), |bytes| bytes.len() > last);
        };
        drained(&self.stdout);
        drained(&self.stderr);
        Finished { status, stdout: self.stdout(), stderr: self.stderr() }
    }
}

impl Drop for SClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for(collected: &Collected, timeout: Duration, ready: impl Fn(&[u8]) -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut bytes = collected.0.lock().unwrap();
    loop {
        if ready(&bytes) {
            return true;
        }
        let Some(left) = deadline.checked_duration_since(Instant::now()) else { return false };
        bytes = collected.1.wait_timeout(bytes, left).unwrap().0;
    }
}

/// Runs `openssl x509 -noout ARGS -in cert`: its output, trimmed.
pub fn x509(cert: &Path, args: &[&str]) -> String {
    let output = Command::new("openssl")
        .args(["x509", "-noout"])
        .args(args)
        .arg("-in")
        .arg(cert)
        .output()
        .unwrap_or_else(|e| panic!("openssl does not run ({e}): scripts/setup installs it"));
    assert!(output.status.success(), "openssl x509 {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// The SHA-256 fingerprint of `cert` as OpenSSL computes it, in lowercase
/// hex without colons (the form the host gives the guest).
pub fn fingerprint_sha256(cert: &Path) -> String {
    let line = x509(cert, &["-fingerprint", "-sha256"]);
    let (_, hex) = line.split_once('=').unwrap_or_else(|| panic!("no fingerprint in {line:?}"));
    hex.replace(':', "").to_ascii_lowercase()
}
