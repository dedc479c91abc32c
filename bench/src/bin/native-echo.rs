//! The native baseline: an echo server on the host's reactor (tokio
//! current_thread) with the host's I/O strategy, and no WebAssembly.
//!
//! It does what the host does around the guest call, so that the difference
//! between the two is the sandbox: sockets get TCP_NODELAY, a connection is
//! read only when readable, into a 256 KiB buffer taken from a small pool for
//! that read alone (an idle connection holds no buffer), a read that leaves
//! room in the buffer ends the socket's readiness, and everything read is
//! written back before the next read. SIGTERM ends it (default action).
use std::cell::RefCell;
use std::net::SocketAddr;

use clap::Parser;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::{TcpListener, TcpStream};

/// Echoes every byte back on each accepted TCP connection.
#[derive(Debug, Parser)]
#[command(name = "native-echo")]
struct Args {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9876")]
    listen: SocketAddr,
}

/// The host's read size (host/src/serve/worker.rs, READ_CHUNK).
const READ_CHUNK: usize = 256 * 1024;
/// The most idle read buffers kept for reuse, as in the host.
const SPARE_READ_BUFFERS: usize = 16;

thread_local! {
    // One reactor thread: the pool needs no lock. Never borrowed across an
    // await.
    static SPARE: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
}

fn take_buffer() -> Box<[u8]> {
    SPARE.with(|spare| spare.borrow_mut().pop()).unwrap_or_else(|| vec![0; READ_CHUNK].into_boxed_slice())
}

fn give_back(buffer: Box<[u8]>) {
    SPARE.with(|spare| {
        let mut spare = spare.borrow_mut();
        if spare.len() < SPARE_READ_BUFFERS {
            spare.push(buffer);
        }
    });
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(serve(args.listen))
}

async fn serve(address: SocketAddr) -> std::io::Result<()> {
    // tokio's bind sets SO_REUSEADDR, as LEV_OPT_REUSEABLE does; the
    // backlog is tokio's 1024, enough for the connect-rate test.
    let listener = TcpListener::bind(address).await?;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    // A reset or a failed write ends the connection; an echo
                    // server has nobody to tell.
                    let _ = echo(stream).await;
                });
            }
            // Running out of descriptors must not spin the loop.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

async fn echo(mut stream: TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    loop {
        // The socket's own readiness slot, as the host waits on it: one
        // task polls it, so it needs no waiter list.
        std::future::poll_fn(|cx| stream.poll_read_ready(cx)).await?;
        let mut buffer = take_buffer();
        let read = match stream.try_read(&mut buffer) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                give_back(buffer);
                continue;
            }
            Err(e) => return Err(e),
        };
        if read == 0 {
            give_back(buffer);
            return Ok(());
        }
        if read < buffer.len() {
            // The socket is empty: wait for the next input, not for a
            // read that would block (the host's `forget_readable`).
            let _ = stream.try_io(Interest::READABLE, || Err::<(), _>(std::io::ErrorKind::WouldBlock.into()));
        }
        let written = stream.write_all(&buffer[..read]).await;
        give_back(buffer);
        written?;
    }
}
