//! Lingering on a closing connection: after sending end-of-stream, read
//! and discard what the peer still sends until it closes too. Closing a
//! socket with unread input makes the kernel send a reset, which can destroy
//! output the peer has not read yet; lingering lets every byte written
//! arrive first.
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// A socket that can be read without blocking once the reactor says it is
/// readable.
pub(crate) trait Readable {
    /// Waits until the socket is readable.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads what is there without waiting.
    fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize>;
}

impl Readable for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn try_read(&self, buffer: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buffer)
    }
}

/// Reads and discards from `stream` until the peer closes, the socket
/// fails, or `most` has passed. Send end-of-stream first: a peer waiting
/// for it would otherwise never close.
pub(crate) async fn linger(stream: &(impl Readable + Sync), most: Duration) {
    let drain = async {
        // On the heap: an array here would sit in the caller's future, which
        // for a connection task lives as long as the connection.
        let mut sink = vec![0u8; 4096];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(most, drain).await;
}
