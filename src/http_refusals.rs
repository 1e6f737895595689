//! JSON bodies for the refusals the HTTP server writes by itself, before any route runs.
//!
//! Why this exists: actix-http's h1 dispatcher answers a request it cannot parse (`400`), a
//! head over its limits (`431`: more than 96 header fields or 128 KiB) and a head that does
//! not arrive within the client request timeout (`408`) on its own, with an empty body, and
//! offers no hook to change those answers (3.20: `Response::bad_request().drop_body()`,
//! `Response::with_body(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, ())` and the 408 of
//! `poll_head_timer` in `h1/dispatcher.rs`). The README promises the JSON error shape on every
//! refusal, so the connection is wrapped: a write that starts with one of those bodiless heads
//! goes out as the same head with the JSON body of the matching [`ApiError`]. The app's own
//! refusals always carry a JSON body, so a `content-length: 0` refusal head can only be the
//! dispatcher's. No crate does this; it is a byte-level rewrite of one response head.
//!
//! Limitation: the head is recognised at the start of a write only. A refusal that follows a
//! response still in the dispatcher's write buffer (a client pipelining a valid request and
//! then a malformed one) goes out unchanged, with its empty body.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use actix_web::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::error::ApiError;

/// A refusal head is about 150 bytes: only this much of a write is searched for its end.
const MAX_HEAD: usize = 1024;

/// The statuses the dispatcher writes by itself, with their metric label (413 is listed in
/// case a later actix-http produces one; 3.20 does not).
const STATUSES: [(StatusCode, &str); 4] = [
    (StatusCode::BAD_REQUEST, "400"),
    (StatusCode::REQUEST_TIMEOUT, "408"),
    (StatusCode::PAYLOAD_TOO_LARGE, "413"),
    (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "431"),
];

/// The JSON bodies of the server's own refusals, built once from [`ApiError`].
#[derive(Debug)]
pub struct Refusals {
    /// Status, its label, the JSON body.
    bodies: Vec<(u16, &'static str, Vec<u8>)>,
}

impl Refusals {
    /// Bodies for a server whose request-head timeout is `head_timeout`.
    pub fn new(head_timeout: Duration) -> Refusals {
        let bodies = STATUSES
            .iter()
            .filter_map(|&(status, label)| {
                ApiError::server_refusal(status, head_timeout)
                    .map(|e| (status.as_u16(), label, e.json_body()))
            })
            .collect();
        Refusals { bodies }
    }

    fn body(&self, status: u16) -> Option<(&'static str, &[u8])> {
        self.bodies
            .iter()
            .find(|(s, _, _)| *s == status)
            .map(|(_, label, body)| (*label, body.as_slice()))
    }

    /// When `buf` starts with a bodiless refusal head: its status (the metric's label), the
    /// length of that head and the bytes to send instead, the same head with the JSON body's
    /// length and type, then the body.
    pub fn rewrite(&self, buf: &[u8]) -> Option<(&'static str, usize, Vec<u8>)> {
        // "HTTP/1.1 431 " at least; anything else is passed on after these few comparisons.
        if buf.len() < 13 || !buf.starts_with(b"HTTP/1.") || buf[8] != b' ' || buf[12] != b' ' {
            return None;
        }
        let status = std::str::from_utf8(&buf[9..12]).ok()?.parse::<u16>().ok()?;
        let (label, body) = self.body(status)?;
        let searched = &buf[..buf.len().min(MAX_HEAD)];
        let head_len = searched.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        let head = &buf[..head_len - 2];
        let mut out = Vec::with_capacity(head_len + 64 + body.len());
        let mut bodiless = false;
        for line in head.split_inclusive(|&b| b == b'\n') {
            let name = line.split(|&b| b == b':').next().unwrap_or_default();
            if name.eq_ignore_ascii_case(b"content-length") {
                if line[name.len() + 1..].trim_ascii() != b"0" {
                    return None;
                }
                bodiless = true;
                continue;
            }
            if name.eq_ignore_ascii_case(b"content-type")
                || name.eq_ignore_ascii_case(b"transfer-encoding")
            {
                return None;
            }
            out.extend_from_slice(line);
        }
        if !bodiless {
            return None;
        }
        out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
        out.extend_from_slice(b"content-type: application/json\r\n\r\n");
        out.extend_from_slice(body);
        Some((label, head_len, out))
    }
}

/// A connection whose bodiless server refusals are written with their JSON bodies.
pub struct RefusalIo<T> {
    io: T,
    refusals: Arc<Refusals>,
    /// A replacement being written: its bytes, how many went out, and how many bytes of the
    /// caller's buffer (the original head) it stands for.
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> RefusalIo<T> {
    /// Wraps one accepted connection.
    pub fn new(io: T, refusals: Arc<Refusals>) -> RefusalIo<T> {
        RefusalIo {
            io,
            refusals,
            pending: None,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &T {
        &self.io
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for RefusalIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for RefusalIo<T> {
    /// After `Pending` or a partial replacement, the caller writes the same bytes again (as
    /// actix-http's dispatcher does, from its unsent buffer): the replacement goes on where
    /// it stopped and reports the original head as written only once all of it is out.
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.pending.is_none() {
            match this.refusals.rewrite(buf) {
                Some((label, head_len, bytes)) => {
                    // actix-http also logs each at error level; see telemetry::init_logging.
                    metrics::counter!("hookgate_http_refusals_total", "status" => label)
                        .increment(1);
                    this.pending = Some((bytes, 0, head_len));
                }
                None => return Pin::new(&mut this.io).poll_write(cx, buf),
            }
        }
        let Some((bytes, sent, head_len)) = this.pending.as_mut() else {
            unreachable!("set just above")
        };
        while *sent < bytes.len() {
            match ready!(Pin::new(&mut this.io).poll_write(cx, &bytes[*sent..])) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(n) => *sent += n,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        let head_len = *head_len;
        this.pending = None;
        Poll::Ready(Ok(head_len))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD_431: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\ndate: Wed, 25 Nov 2026 22:00:00 GMT\r\n\r\n";

    fn refusals() -> Refusals {
        Refusals::new(Duration::from_millis(3000))
    }

    fn split(out: &[u8]) -> (String, serde_json::Value) {
        let end = out.windows(4).position(|w| w == b"\r\n\r\n").expect("head") + 4;
        let head = String::from_utf8(out[..end].to_vec()).expect("utf-8");
        (
            head,
            serde_json::from_slice(&out[end..]).expect("JSON body"),
        )
    }

    #[test]
    fn bodiless_refusals_get_their_json_body() {
        let (label, len, out) = refusals().rewrite(HEAD_431).expect("rewritten");
        assert_eq!((label, len), ("431", HEAD_431.len()));
        let (head, body) = split(&out);
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/json\r\n"),
            "{head}"
        );
        let length = out.len() - head.len();
        assert!(
            head.contains(&format!("\r\ncontent-length: {length}\r\n")),
            "{head}"
        );
        assert!(!head.contains("content-length: 0"), "{head}");
        assert_eq!(body["error"], "headers_too_large");

        let head = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\n\r\n";
        let (_, _, out) = refusals().rewrite(head).expect("rewritten");
        let (_, body) = split(&out);
        assert_eq!(body["error"], "request_timeout");
        assert!(body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("3000 ms"));
        let head = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
        let (_, _, out) = refusals().rewrite(head).expect("rewritten");
        assert_eq!(split(&out).1["error"], "bad_request");
    }

    #[test]
    fn everything_else_passes_unchanged() {
        let r = refusals();
        for buf in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 41\r\ncontent-type: application/json\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n",
            b"{\"status\":\"queued\"}",
            b"HTTP/1.1 4",
            b"",
        ] {
            assert!(r.rewrite(buf).is_none(), "{}", String::from_utf8_lossy(buf));
        }
    }

    /// A sink that takes at most `chunk` bytes a call and is `Pending` every other call.
    struct Trickle {
        out: Vec<u8>,
        chunk: usize,
        ready: bool,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.ready = !self.ready;
            if !self.ready {
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            let n = buf.len().min(self.chunk);
            self.out.extend_from_slice(&buf[..n]);
            Poll::Ready(Ok(n))
        }

        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    #[test]
    fn partial_writes_send_the_whole_replacement_once() {
        // Written as the dispatcher does: the unsent rest of its buffer, again and again.
        let mut data = HEAD_431.to_vec();
        data.extend_from_slice(b"tail");
        let mut io = RefusalIo::new(
            Trickle {
                out: Vec::new(),
                chunk: 7,
                ready: false,
            },
            Arc::new(refusals()),
        );
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut written = 0;
        while written < data.len() {
            if let Poll::Ready(n) = Pin::new(&mut io).poll_write(&mut cx, &data[written..]) {
                written += n.expect("write");
            }
        }
        let (_, _, expected) = refusals().rewrite(HEAD_431).expect("rewritten");
        let mut want = expected;
        want.extend_from_slice(b"tail");
        assert_eq!(io.get_ref().out, want);
    }
}
