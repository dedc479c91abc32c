//! Unix domain listening sockets at a path. A file left by a host that
//! died is replaced only when nothing listens on it; the file gets the mode
//! and owner the operator asks for before it listens, so no client
//! connects through looser permissions; and it is removed when the host is
//! done with it, unless another process has replaced it meanwhile.
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

use super::ListenOptions;
use super::endpoint::{Endpoint, UnixEndpoint};
use super::socket::{BindError, ListeningSocket, listen_backlog};

/// The socket file's mode and owner (`--unix-mode`, `--unix-owner`);
/// `None` leaves what the process's umask and user give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnixPermissions {
    /// Permission bits, such as 0o660.
    pub mode: Option<u32>,
    /// The owning user's id.
    pub uid: Option<u32>,
    /// The owning group's id.
    pub gid: Option<u32>,
}

/// A socket file this host made: removed when dropped, if it is still the
/// one made.
#[derive(Debug)]
pub struct UnixSocketFile {
    path: PathBuf,
    device: u64,
    inode: u64,
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path).is_ok_and(|m| m.dev() == self.device && m.ino() == self.inode);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Binds a Unix stream socket at `path` and listens: a stale file from a
/// host that died is removed first, one something listens on is refused.
/// Of `options`, only `close-on-exec` concerns a Unix socket here; the
/// others act in the accept loop or mean nothing without TCP.
pub fn bind_unix_listener(
    path: &Path,
    options: ListenOptions,
    backlog: i32,
    permissions: UnixPermissions,
) -> Result<(ListeningSocket, UnixSocketFile), BindError> {
    let address = Endpoint::Unix(UnixEndpoint { path: Some(path.to_path_buf()), credentials: None });
    let Some(backlog) = listen_backlog(backlog) else {
        return Err(BindError::ZeroBacklog(address));
    };
    let io = |step| {
        let address = address.clone();
        move |error| BindError::Io { step, address, error }
    };
    remove_stale(path).map_err(io("replace the file at"))?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None).map_err(io("create a socket for"))?;
    socket.set_cloexec(options.contains(ListenOptions::CLOSE_ON_EXEC)).map_err(io("set close-on-exec for"))?;
    socket.set_nonblocking(true).map_err(io("make non-blocking the socket for"))?;
    socket.bind(&SockAddr::unix(path).map_err(io("make an address of"))?).map_err(io("bind"))?;
    let metadata = std::fs::symlink_metadata(path).map_err(io("look at"))?;
    // From here on the file is ours: removed again if anything fails.
    let file = UnixSocketFile { path: path.to_path_buf(), device: metadata.dev(), inode: metadata.ino() };
    if let Some(mode) = permissions.mode {
        rustix::fs::chmod(path, rustix::fs::Mode::from_raw_mode(mode)).map_err(|e| io("set the mode of")(e.into()))?;
    }
    if permissions.uid.is_some() || permissions.gid.is_some() {
        let uid = permissions.uid.map(rustix::fs::Uid::from_raw);
        let gid = permissions.gid.map(rustix::fs::Gid::from_raw);
        rustix::fs::chown(path, uid, gid).map_err(|e| io("set the owner of")(e.into()))?;
    }
    socket.listen(backlog).map_err(io("listen on"))?;
    Ok((ListeningSocket::Unix(socket.into()), file))
}

/// Removes a socket file nothing listens on; refuses one something does,
/// and anything that is not a socket.
fn remove_stale(path: &Path) -> io::Result<()> {
    let metadata = match std::fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !metadata.file_type().is_socket() {
        return Err(io::Error::new(io::ErrorKind::AlreadyExists, "a file that is not a socket is there"));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(io::ErrorKind::AddrInUse, "something listens on it")),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            tracing::info!(path = %path.display(), "removing a stale socket file nothing listens on");
            std::fs::remove_file(path)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn temporary(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("evconn-unix-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.sock")
    }

    /// The file gets the mode asked for, and goes when dropped.
    #[test]
    fn binds_with_the_mode_asked_and_removes_the_file() {
        let path = temporary("mode");
        let permissions = UnixPermissions { mode: Some(0o640), ..Default::default() };
        let (socket, file) = bind_unix_listener(&path, ListenOptions::empty(), -1, permissions).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        UnixStream::connect(&path).expect("it listens");
        drop(socket);
        drop(file);
        assert!(!path.exists(), "the file is removed");
    }

    /// A file nobody listens on is replaced; one a listener holds is not,
    /// nor is a file that is not a socket.
    #[test]
    fn replaces_only_a_stale_socket_file() {
        let path = temporary("stale");
        let (socket, file) = bind_unix_listener(&path, ListenOptions::empty(), -1, Default::default()).unwrap();
        let error = bind_unix_listener(&path, ListenOptions::empty(), -1, Default::default()).unwrap_err();
        assert!(error.to_string().contains("something listens on it"), "{error}");
        // A host killed without cleaning up leaves its file behind.
        drop(socket);
        std::mem::forget(file);
        assert!(path.exists());
        let (_socket, _file) = bind_unix_listener(&path, ListenOptions::empty(), -1, Default::default()).unwrap();
        UnixStream::connect(&path).expect("the new socket listens");

        let regular = path.with_file_name("regular");
        std::fs::write(&regular, "data").unwrap();
        let error = bind_unix_listener(&regular, ListenOptions::empty(), -1, Default::default()).unwrap_err();
        assert!(error.to_string().contains("not a socket"), "{error}");
        assert_eq!(std::fs::read_to_string(&regular).unwrap(), "data", "left alone");
    }

    /// Dropping the file of a socket another host has replaced since
    /// leaves the new one alone.
    #[test]
    fn leaves_a_replaced_file_alone() {
        let path = temporary("replaced");
        let (socket, file) = bind_unix_listener(&path, ListenOptions::empty(), -1, Default::default()).unwrap();
        drop(socket);
        // Moved aside rather than removed, so the new file cannot reuse
        // the old one's inode number.
        std::fs::rename(&path, path.with_file_name("old.sock")).unwrap();
        let (_socket, _other) = bind_unix_listener(&path, ListenOptions::empty(), -1, Default::default()).unwrap();
        drop(file);
        assert!(path.exists(), "the newer socket's file stays");
    }
}
