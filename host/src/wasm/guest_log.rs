//! Guest standard output and error, sent to the host's log one line at a
//! time and tagged with the component's name and the connection whose
//! callback wrote it.
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// The longest partial line kept while waiting for its newline; a longer
/// one is logged in pieces so a guest cannot grow the host's memory.
const MAX_LINE: usize = 4096;

/// One of a guest's output streams.
#[derive(Clone, Debug)]
pub struct GuestLog {
    component: Arc<str>,
    stream: &'static str,
    /// The connection whose callback runs (0 for none), set by the instance.
    connection: Arc<AtomicU64>,
}

impl GuestLog {
    /// The guest's standard output.
    pub fn stdout(component: Arc<str>, connection: Arc<AtomicU64>) -> Self {
        GuestLog { component, stream: "stdout", connection }
    }

    /// The guest's standard error.
    pub fn stderr(component: Arc<str>, connection: Arc<AtomicU64>) -> Self {
        GuestLog { component, stream: "stderr", connection }
    }

    fn emit(&self, line: &[u8]) {
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        match self.connection.load(Ordering::Relaxed) {
            0 => tracing::info!(target: "guest", component = %self.component, stream = %self.stream, "{line}"),
            conn => tracing::info!(target: "guest", component = %self.component, conn, stream = %self.stream, "{line}"),
        }
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { log: self.clone(), partial: Vec::new() })
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineWriter { log: self.clone(), partial: Vec::new() })
    }
}

/// Splits written bytes into lines; what is left at the end is logged when
/// the stream is dropped.
struct LineWriter {
    log: GuestLog,
    partial: Vec<u8>,
}

impl LineWriter {
    fn push(&mut self, mut bytes: &[u8]) {
        while let Some(newline) = bytes.iter().position(|&b| b == b'\n') {
            self.partial.extend_from_slice(&bytes[..newline]);
            self.log.emit(&self.partial);
            self.partial.clear();
            bytes = &bytes[newline + 1..];
        }
        self.partial.extend_from_slice(bytes);
        while self.partial.len() >= MAX_LINE {
            let rest = self.partial.split_off(MAX_LINE);
            self.log.emit(&self.partial);
            self.partial = rest;
        }
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.log.emit(&self.partial);
        }
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: bytes::Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(usize::MAX)
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
