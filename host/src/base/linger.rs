//! Lingering on a closing TCP connection: after sending end-of-stream, read
//! and discard what the peer still sends until it closes too. Closing a
//! socket with unread input makes the kernel send a reset, which can destroy
//! output the peer has not read yet; lingering lets every byte written
//! arrive first.
use std::io;
use std::time::Duration;

use tokio::net::TcpStream;

/// Reads and discards from `stream` until the peer closes, the socket
/// fails, or `most` has passed. Send end-of-stream first: a peer waiting
/// for it would otherwise never close.
pub(crate) async fn linger(stream: &TcpStream, most: Duration) {
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
