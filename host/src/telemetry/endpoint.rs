//! The `/metrics` endpoint: just enough HTTP/1.1 for a scrape. Each client
//! sends one request head (bounded in size and time), gets one answer, and
//! the connection closes. It runs on the control runtime, so a guest busy on
//! a reactor never delays it.
//!
//! Clients that connect and send nothing, or half a request, cannot keep a
//! scrape out: each is served by a task of its own, with no gate to queue
//! behind, and past `MAX_CLIENTS` the client connected longest is dropped
//! to make room. A scrape sends its request as it connects and is answered
//! in microseconds, so evicting it would take `MAX_CLIENTS` new
//! connections within that time.
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

use super::metrics::{CONTENT_TYPE, Metrics};
use crate::base::backoff::Backoff;
use crate::base::linger::linger;

/// The largest request head read; a scrape's is a few hundred bytes.
const MAX_HEAD: usize = 8 * 1024;

/// How long a client has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a client has to take the answer.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Clients served at once; one more drops the one connected longest. Each
/// holds a descriptor and at most `MAX_HEAD` bytes, for at most
/// `HEAD_TIMEOUT` + `WRITE_TIMEOUT` + `LINGER`.
const MAX_CLIENTS: usize = 256;

/// After answering, how long to read what the client still sends, waiting
/// for it to close (see `base::linger`).
const LINGER: Duration = Duration::from_secs(1);

/// Answers scrapes on `listener` until the task is aborted.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let mut clients = Clients::default();
    let mut backoff = Backoff::default();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                backoff.reset();
                clients.admit(answer(stream, metrics.clone()));
            }
            Err(e) => {
                let pause = backoff.next();
                tracing::debug!(error = %e, retry_in = ?pause, "metrics: accept failed");
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// The clients being answered, oldest first. Dropped with the endpoint's
/// task, which ends theirs.
#[derive(Default)]
struct Clients {
    tasks: JoinSet<()>,
    by_age: VecDeque<AbortHandle>,
}

impl Clients {
    /// Serves a new client, dropping the oldest one if `MAX_CLIENTS` are
    /// being served.
    fn admit(&mut self, client: impl Future<Output = ()> + Send + 'static) {
        while self.tasks.try_join_next().is_some() {}
        self.by_age.retain(|task| !task.is_finished());
        if self.by_age.len() >= MAX_CLIENTS
            && let Some(oldest) = self.by_age.pop_front()
        {
            tracing::debug!("metrics: too many clients; dropping the one connected longest");
            oldest.abort();
        }
        self.by_age.push_back(self.tasks.spawn(client));
    }
}

/// Reads one request from `stream`, answers it, and closes.
async fn answer(mut stream: TcpStream, metrics: Arc<Metrics>) {
    let reply = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => reply_to(&head),
        Ok(Err(HeadError::TooLarge)) => Reply::HeadTooLarge,
        Ok(Err(HeadError::Closed)) => return,
        Err(_) => {
            tracing::debug!("metrics: no request head in time");
            return;
        }
    };
    let bytes = reply.encode(|| metrics.encode());
    if !matches!(tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&bytes)).await, Ok(Ok(()))) {
        return;
    }
    let _ = stream.shutdown().await;
    linger(&stream, LINGER).await;
}

/// Why no complete request head came.
#[derive(Debug, PartialEq, Eq)]
enum HeadError {
    /// More than `MAX_HEAD` bytes without the blank line that ends a head.
    TooLarge,
    /// The client closed, or the socket failed, first.
    Closed,
}

/// Reads until the blank line that ends a request head.
async fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, HeadError> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !is_complete(&head) {
        if head.len() >= MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let room = (MAX_HEAD - head.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]).await {
            Ok(0) | Err(_) => return Err(HeadError::Closed),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
        }
    }
    Ok(head)
}

/// Whether `head` holds the blank line that ends a request head (lines end
/// in CRLF; a bare LF is tolerated, as RFC 9112 allows).
fn is_complete(head: &[u8]) -> bool {
    head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n")
}

/// The answer to a request.
#[derive(Debug, PartialEq, Eq)]
enum Reply {
    /// 200 with the metrics; without them for `HEAD`.
    Metrics { body: bool },
    /// 400: the request line is not HTTP/1.x.
    BadRequest,
    /// 404: a path other than `/metrics`.
    NotFound,
    /// 405: `/metrics` with a method other than GET or HEAD.
    MethodNotAllowed,
    /// 431: the head does not fit in `MAX_HEAD`.
    HeadTooLarge,
}

/// What to answer to a complete request head. Only the request line
/// matters: the endpoint has no use for headers.
fn reply_to(head: &[u8]) -> Reply {
    let line = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let Ok(line) = std::str::from_utf8(line) else { return Reply::BadRequest };
    let line = line.strip_suffix('\r').unwrap_or(line);
    let [method, target, version] = line.split(' ').collect::<Vec<_>>()[..] else { return Reply::BadRequest };
    if method.is_empty() || !target.starts_with('/') || !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return Reply::BadRequest;
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    if path != "/metrics" {
        return Reply::NotFound;
    }
    match method {
        "GET" => Reply::Metrics { body: true },
        "HEAD" => Reply::Metrics { body: false },
        _ => Reply::MethodNotAllowed,
    }
}

impl Reply {
    /// The whole response; `metrics` is called only to answer with them.
    fn encode(&self, metrics: impl FnOnce() -> String) -> Vec<u8> {
        let (status, extra, body) = match self {
            Reply::Metrics { .. } => ("200 OK", "", metrics()),
            Reply::BadRequest => ("400 Bad Request", "", "bad request\n".to_string()),
            Reply::NotFound => ("404 Not Found", "", "not found: metrics are at /metrics\n".to_string()),
            Reply::MethodNotAllowed => {
                ("405 Method Not Allowed", "Allow: GET, HEAD\r\n", "method not allowed\n".to_string())
            }
            Reply::HeadTooLarge => ("431 Request Header Fields Too Large", "", "request head too large\n".to_string()),
        };
        let content_type = match self {
            Reply::Metrics { .. } => CONTENT_TYPE,
            _ => "text/plain; charset=utf-8",
        };
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        if !matches!(self, Reply::Metrics { body: false }) {
            response.extend_from_slice(body.as_bytes());
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A head is complete at its blank line, with CRLF or bare LF.
    #[test]
    fn finds_the_end_of_a_head() {
        assert!(is_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(is_complete(b"GET /metrics HTTP/1.1\n\n"));
        assert!(!is_complete(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"));
        assert!(!is_complete(b""));
    }

    /// Routing by path first, then method; malformed request lines are 400.
    #[test]
    fn routes_by_path_then_method() {
        let cases: [(&[u8], Reply); 10] = [
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Reply::Metrics { body: true }),
            (b"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", Reply::Metrics { body: true }),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Reply::Metrics { body: false }),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Reply::MethodNotAllowed),
            (b"GET / HTTP/1.1\r\n\r\n", Reply::NotFound),
            (b"POST /metrics/x HTTP/1.1\r\n\r\n", Reply::NotFound),
            (b"GET /metrics HTTP/2\r\n\r\n", Reply::BadRequest),
            (b"GET  /metrics HTTP/1.1\r\n\r\n", Reply::BadRequest),
            (b"GET metrics HTTP/1.1\r\n\r\n", Reply::BadRequest),
            (b"\xff /metrics HTTP/1.1\r\n\r\n", Reply::BadRequest),
        ];
        for (head, reply) in cases {
            assert_eq!(reply_to(head), reply, "{}", String::from_utf8_lossy(head));
        }
    }

    /// Responses carry their length and close; HEAD gets no body; only a
    /// scrape encodes the metrics.
    #[test]
    fn encodes_responses() {
        let text = |reply: Reply| String::from_utf8(reply.encode(|| "m 1\n# EOF\n".to_string())).unwrap();
        let ok = text(Reply::Metrics { body: true });
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")), "{ok}");
        assert!(ok.ends_with("Content-Length: 10\r\nConnection: close\r\n\r\nm 1\n# EOF\n"), "{ok}");
        let head = text(Reply::Metrics { body: false });
        assert!(head.ends_with("Content-Length: 10\r\nConnection: close\r\n\r\n"), "{head}");
        let not_allowed = Reply::MethodNotAllowed.encode(|| panic!("metrics encoded for a 405"));
        let not_allowed = String::from_utf8(not_allowed).unwrap();
        assert!(not_allowed.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{not_allowed}");
        assert!(not_allowed.contains("\r\nAllow: GET, HEAD\r\n"), "{not_allowed}");
        assert!(text(Reply::NotFound).starts_with("HTTP/1.1 404 Not Found\r\n"));
    }
}
