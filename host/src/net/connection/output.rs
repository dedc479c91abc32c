//! A connection's output queue: the bytes the guest wrote that the socket
//! has not taken yet. They are kept in chunks no larger than what they hold
//! (small writes share a chunk), so the memory a queue holds is its length
//! plus at most one partly filled chunk, and the host's output memory
//! ([`OutputBudget`]) counts every byte of it from the write to the send.
//! An empty queue is nothing but a null pointer: most connections, most of
//! the time, have nothing queued.
use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::Arc;

use crate::net::budget::OutputBudget;

/// Writes up to this size go into a shared chunk; larger ones get their own.
const SMALL_WRITE: usize = 4 * 1024;

/// The size of a chunk that small writes share.
const SHARED_CHUNK: usize = 16 * 1024;

/// Slices handed to one `writev`.
const SLICES_PER_SEND: usize = 16;

/// Output waiting for the socket.
#[derive(Debug, Default)]
pub(super) struct Output {
    /// `None` while nothing is queued.
    queue: Option<Box<Queue>>,
}

#[derive(Debug)]
struct Queue {
    chunks: VecDeque<Vec<u8>>,
    /// Bytes of the first chunk already sent.
    sent: usize,
    /// Bytes queued, in all chunks.
    len: usize,
    /// Where they count.
    budget: Arc<OutputBudget>,
}

impl Output {
    pub(super) fn len(&self) -> usize {
        self.queue.as_ref().map_or(0, |queue| queue.len)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_none()
    }

    /// Appends `data`, counted in `budget`. The caller checked that it fits.
    pub(super) fn push(&mut self, data: &[u8], budget: &Arc<OutputBudget>) {
        if data.is_empty() {
            return;
        }
        let queue = self.queue.get_or_insert_with(|| {
            Box::new(Queue { chunks: VecDeque::new(), sent: 0, len: 0, budget: budget.clone() })
        });
        queue.budget.take(data.len());
        queue.len += data.len();
        if data.len() <= SMALL_WRITE {
            if let Some(last) = queue.chunks.back_mut()
                && last.capacity() - last.len() >= data.len()
            {
                last.extend_from_slice(data);
                return;
            }
            let mut chunk = Vec::with_capacity(SHARED_CHUNK);
            chunk.extend_from_slice(data);
            queue.chunks.push_back(chunk);
        } else {
            // Exactly as large as the write.
            queue.chunks.push_back(data.to_vec());
        }
    }

    /// Hands the queued bytes, in order, to `send` (a socket's
    /// `writev`, or a TLS session's), which returns how many it took and
    /// `WouldBlock` once it takes none; forgets those. Returns how many
    /// bytes went.
    pub(super) fn send_with(&mut self, send: impl FnOnce(&[IoSlice<'_>]) -> io::Result<usize>) -> io::Result<usize> {
        let Some(queue) = self.queue.as_mut() else { return Ok(0) };
        let mut slices = [IoSlice::new(&[]); SLICES_PER_SEND];
        let mut count = 0;
        for (index, chunk) in queue.chunks.iter().take(SLICES_PER_SEND).enumerate() {
            let start = if index == 0 { queue.sent } else { 0 };
            slices[index] = IoSlice::new(&chunk[start..]);
            count += 1;
        }
        let sent = send(&slices[..count])?;
        queue.advance(sent);
        if queue.len == 0 {
            self.queue = None;
        }
        Ok(sent)
    }

    /// Drops everything queued: the socket failed, so none of it can be
    /// sent.
    pub(super) fn clear(&mut self) {
        self.queue = None;
    }
}

impl Queue {
    /// Forgets the first `bytes`, sent.
    fn advance(&mut self, mut bytes: usize) {
        self.len -= bytes;
        self.budget.give_back(bytes);
        while bytes > 0 {
            let first = self.chunks.front().expect("bytes sent were queued");
            let left = first.len() - self.sent;
            if bytes < left {
                self.sent += bytes;
                return;
            }
            bytes -= left;
            self.chunks.pop_front();
            self.sent = 0;
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        self.budget.give_back(self.len);
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    /// Small writes share chunks, large ones get their own; what is sent
    /// arrives in order, and the budget counts exactly what is queued.
    #[tokio::test]
    async fn sends_in_order_and_counts_what_it_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut peer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (stream, _) = listener.accept().await.unwrap();
        let budget = Arc::new(OutputBudget::new(1 << 30));
        let mut output = Output::default();
        let mut expected = Vec::new();
        for n in 0..100u32 {
            let piece = vec![(n % 251) as u8; if n % 10 == 0 { 20_000 } else { 100 }];
            output.push(&piece, &budget);
            expected.extend_from_slice(&piece);
        }
        assert_eq!(output.len(), expected.len());
        assert_eq!(budget.used(), expected.len());
        let chunks = output.queue.as_ref().unwrap().chunks.len();
        assert!(chunks < 30, "{chunks} chunks for 100 writes");
        let mut received = Vec::new();
        while !output.is_empty() {
            match output.send_with(|slices| stream.try_write_vectored(slices)) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let mut buffer = vec![0u8; 1 << 16];
                    let n = peer.read(&mut buffer).await.unwrap();
                    received.extend_from_slice(&buffer[..n]);
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(budget.used(), 0);
        assert!(output.queue.is_none(), "an emptied queue holds nothing");
        drop(stream);
        peer.read_to_end(&mut received).await.unwrap();
        assert!(received == expected, "the bytes arrive as written");
    }

    /// Dropping or clearing a queue gives its bytes back.
    #[test]
    fn clearing_and_dropping_give_the_budget_back() {
        let budget = Arc::new(OutputBudget::new(1 << 20));
        let mut output = Output::default();
        output.push(&[1; 5000], &budget);
        output.clear();
        assert_eq!(budget.used(), 0);
        output.push(&[1; 300], &budget);
        drop(output);
        assert_eq!(budget.used(), 0);
    }
}
