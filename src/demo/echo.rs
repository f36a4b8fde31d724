//! The demo's echo upstream: an HTTP server that answers every request with what it received, so
//! a person (or a test) can see exactly which headers Postern sent upstream.
//!
//! Besides the echo it has a few endpoints for exercising a proxy: streaming uploads and downloads
//! that never hold a whole body in memory, a slow answer, any status code, and a WebSocket echo.
//! It listens on loopback only and is for development and tests only.
//!
//! | request | answer |
//! | --- | --- |
//! | any other | 200, JSON `{method, uri, version, headers: [[name, value], ..], body_bytes, body}` (HTML for browsers) |
//! | `POST`/`PUT /upload` | the body is streamed and counted: `{"received_bytes": N, "sha256": hex}` |
//! | `GET /download?bytes=N` | N bytes, byte `i` being `i % 256`, streamed in 64 KiB chunks, with `Content-Length: N` |
//! | `/slow?ms=N` | the echo, after N milliseconds |
//! | `/status/{code}` | that status (200–599) |
//! | `Upgrade: websocket` | a WebSocket (RFC 6455) echo: text and binary frames come back, pings get pongs |

use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::{Frame as BodyFrame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::body::{Body, BoxError, boxed, empty, full};
use crate::server::simple::{NotLoopback, ensure_loopback, serve};

/// The size of each chunk `/download` streams.
const DOWNLOAD_CHUNK: usize = 64 * 1024;

/// How much of a request body the echo quotes back; the rest is only counted.
const ECHO_BODY_LIMIT: usize = 64 * 1024;

/// The largest WebSocket frame payload accepted from a client.
const MAX_FRAME_PAYLOAD: u64 = 16 * 1024 * 1024;

/// Appended to a client's `Sec-WebSocket-Key` before hashing (RFC 6455 section 1.3).
const WEBSOCKET_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `/download`'s repeating pattern: byte `i` of every download is `i % 256`. The chunk size is a
/// multiple of 256, so the pattern runs on unbroken from one chunk to the next.
static PATTERN: [u8; DOWNLOAD_CHUNK] = pattern();

const fn pattern() -> [u8; DOWNLOAD_CHUNK] {
    let mut bytes = [0u8; DOWNLOAD_CHUNK];
    let mut i = 0;
    while i < DOWNLOAD_CHUNK {
        bytes[i] = (i % 256) as u8;
        i += 1;
    }
    bytes
}

/// A running echo upstream; cloning it gives another handle to the same server.
#[derive(Debug, Clone)]
pub struct EchoUpstream {
    addr: SocketAddr,
}

impl EchoUpstream {
    /// Starts the echo upstream on `listener` (which must be bound to a loopback address) and
    /// serves until `shutdown` completes; open WebSockets are then closed with status 1001.
    pub async fn start(
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<EchoUpstream, NotLoopback> {
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            // An unbound or broken socket has no address we could vouch for: refuse it as
            // we refuse any address that is not provably loopback.
            Err(_) => return Err(NotLoopback(SocketAddr::from(([0, 0, 0, 0], 0)))),
        };
        ensure_loopback(addr)?;

        // Upgraded connections outlive the HTTP server's graceful shutdown, so they watch their
        // own signal, raised when the server's shutdown begins.
        let (stop_sockets, sockets_stopped) = watch::channel(false);
        let shutdown = async move {
            shutdown.await;
            let _ = stop_sockets.send(true);
        };
        let handler = move |request: Request<Incoming>| {
            let sockets_stopped = sockets_stopped.clone();
            async move { handle(request, sockets_stopped).await }
        };
        tokio::spawn(serve(listener, handler, shutdown));
        Ok(EchoUpstream { addr })
    }

    /// The base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address the echo upstream listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

async fn handle(request: Request<Incoming>, sockets_stopped: watch::Receiver<bool>) -> Response<Body> {
    if request.version() == Version::HTTP_11 && header_has_token(request.headers(), header::UPGRADE, "websocket") {
        return websocket(request, sockets_stopped);
    }
    let path = request.uri().path();
    let method = request.method();
    if path == "/upload" && (method == Method::POST || method == Method::PUT) {
        return upload(request).await;
    }
    if path == "/download" && (method == Method::GET || method == Method::HEAD) {
        return download(&request);
    }
    if path == "/slow" {
        let Some(ms) = query_u64(&request, "ms") else {
            return text(StatusCode::BAD_REQUEST, "/slow needs ?ms=N (milliseconds)\n");
        };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        return echo(request).await;
    }
    if let Some(code) = path.strip_prefix("/status/") {
        return status(code);
    }
    echo(request).await
}

/// The default answer: what was received, as JSON, or as a page when a browser asks.
async fn echo(request: Request<Incoming>) -> Response<Body> {
    let (parts, body) = request.into_parts();
    // Read the whole body (quoting only its start) so a client sending one is never cut off
    // mid-upload by an early answer.
    let mut received = 0u64;
    let mut quoted = Vec::new();
    let mut body = body;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    received += data.len() as u64;
                    let room = ECHO_BODY_LIMIT.saturating_sub(quoted.len());
                    quoted.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Err(error) => {
                return text(StatusCode::BAD_REQUEST, &format!("reading the request body failed: {error}\n"));
            }
        }
    }
    let uri = parts.uri.path_and_query().map_or_else(|| parts.uri.to_string(), ToString::to_string);
    let version = format!("{:?}", parts.version);
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let body_text = (received <= ECHO_BODY_LIMIT as u64).then(|| String::from_utf8_lossy(&quoted).into_owned());

    if header_contains(&parts.headers, header::ACCEPT, "text/html") {
        let page = echo_page(parts.method.as_str(), &uri, &version, &headers, received);
        let mut response = Response::new(full(page));
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        return response;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "method": parts.method.as_str(),
            "uri": uri,
            "version": version,
            "headers": headers,
            "body_bytes": received,
            "body": body_text,
        }),
    )
}

fn echo_page(method: &str, uri: &str, version: &str, headers: &[(String, String)], body_bytes: u64) -> String {
    let mut rows = String::new();
    for (name, value) in headers {
        let highlighted = name.starts_with("x-forwarded-") || name.starts_with("x-postern-");
        let _ = writeln!(
            rows,
            "<tr{}><th scope=\"row\">{}</th><td>{}</td></tr>",
            if highlighted { " class=\"identity\"" } else { "" },
            escape_html(name),
            escape_html(value),
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>Echo upstream</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#1b1b1b}}\
         table{{border-collapse:collapse;width:100%}}th,td{{text-align:left;padding:.35rem .5rem;\
         border-bottom:1px solid #ddd;vertical-align:top}}td{{font-family:ui-monospace,monospace;\
         word-break:break-all}}tr.identity{{background:#fff4c2}}.note{{background:#eef4ff;padding:.75rem 1rem;\
         border-left:4px solid #3a6fd8}}code{{font-family:ui-monospace,monospace}}\
         </style></head><body>\
         <h1>Echo upstream</h1>\
         <p class=\"note\">This is the demo's echo upstream: it shows the headers Postern sent it. \
         Highlighted rows are the <code>X-Forwarded-*</code> and <code>X-Postern-*</code> headers \
         Postern adds after checking who you are.</p>\
         <p><code>{} {} {}</code> &middot; body: {} bytes</p>\
         <table><caption>Request headers, in the order received</caption>\
         <thead><tr><th scope=\"col\">Name</th><th scope=\"col\">Value</th></tr></thead>\
         <tbody>\n{}</tbody></table></body></html>\n",
        escape_html(method),
        escape_html(uri),
        escape_html(version),
        body_bytes,
        rows,
    )
}

/// Streams the request body, counting and hashing it without keeping it.
async fn upload(request: Request<Incoming>) -> Response<Body> {
    let mut body = request.into_body();
    let mut received = 0u64;
    let mut digest = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    received += data.len() as u64;
                    digest.update(data);
                }
            }
            Err(error) => {
                return text(StatusCode::BAD_REQUEST, &format!("reading the upload failed: {error}\n"));
            }
        }
    }
    let sha256 = digest.finish().as_ref().iter().fold(String::new(), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    });
    json_response(StatusCode::OK, &json!({ "received_bytes": received, "sha256": sha256 }))
}

fn download(request: &Request<Incoming>) -> Response<Body> {
    let Some(bytes) = query_u64(request, "bytes") else {
        return text(StatusCode::BAD_REQUEST, "/download needs ?bytes=N\n");
    };
    let mut response = Response::new(boxed(PatternBody { remaining: bytes }));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes));
    response
}

/// A body of `remaining` bytes of [`PATTERN`], produced chunk by chunk as the client reads.
struct PatternBody {
    remaining: u64,
}

impl http_body::Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<BodyFrame<Bytes>, BoxError>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let len = usize::try_from(self.remaining).map_or(DOWNLOAD_CHUNK, |left| left.min(DOWNLOAD_CHUNK));
        self.remaining -= len as u64;
        Poll::Ready(Some(Ok(BodyFrame::data(Bytes::from_static(&PATTERN[..len])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

fn status(code: &str) -> Response<Body> {
    let status = match code.parse::<u16>().ok().and_then(|code| StatusCode::from_u16(code).ok()) {
        // 1xx are not final answers; hyper could not send them as one.
        Some(status) if status.as_u16() >= 200 => status,
        _ => {
            return text(StatusCode::BAD_REQUEST, "/status/{code} needs a status code from 200 to 599\n");
        }
    };
    if status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED || status == StatusCode::RESET_CONTENT {
        let mut response = Response::new(empty());
        *response.status_mut() = status;
        return response;
    }
    json_response(status, &json!({ "status": status.as_u16() }))
}

// ---------------------------------------------------------------------------------------------
// WebSocket

/// Answers a WebSocket opening handshake with 101 and echoes on the upgraded connection.
fn websocket(mut request: Request<Incoming>, sockets_stopped: watch::Receiver<bool>) -> Response<Body> {
    let headers = request.headers();
    if request.method() != Method::GET || !header_has_token(headers, header::CONNECTION, "upgrade") {
        return text(
            StatusCode::BAD_REQUEST,
            "a WebSocket handshake is a GET with `Connection: upgrade` and `Upgrade: websocket`\n",
        );
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        let mut response = text(StatusCode::UPGRADE_REQUIRED, "only WebSocket version 13 is supported\n");
        response.headers_mut().insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
        return response;
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes) else {
        return text(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key\n");
    };
    if STANDARD.decode(key).map(|nonce| nonce.len()) != Ok(16) {
        return text(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key must be 16 bytes in base64\n");
    }
    let Ok(accept) = HeaderValue::from_str(&websocket_accept(key)) else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "could not build Sec-WebSocket-Accept\n");
    };
    // Choosing the first offered subprotocol lets a test see subprotocol negotiation pass through.
    let protocol = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .find(|protocol| !protocol.is_empty())
        .and_then(|protocol| HeaderValue::from_str(protocol).ok());

    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = BufReader::new(TokioIo::new(upgraded));
                if let Err(error) = echo_frames(io, sockets_stopped).await {
                    tracing::debug!(%error, "echo upstream: WebSocket ended with an error");
                }
            }
            Err(error) => tracing::debug!(%error, "echo upstream: WebSocket upgrade failed"),
        }
    });

    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    if let Some(protocol) = protocol {
        headers.insert(header::SEC_WEBSOCKET_PROTOCOL, protocol);
    }
    response
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
fn websocket_accept(key: &[u8]) -> String {
    let mut sha1 = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    sha1.update(key);
    sha1.update(WEBSOCKET_GUID.as_bytes());
    STANDARD.encode(sha1.finish().as_ref())
}

/// The frame loop of one WebSocket: echo data frames, answer pings, close when asked or when
/// the server shuts down.
async fn echo_frames<S>(mut io: S, mut sockets_stopped: watch::Receiver<bool>) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    // Whether a fragmented message has begun and not yet ended: continuation frames are only
    // valid inside one, and a new message may not start inside one (RFC 6455 section 5.4).
    let mut in_message = false;
    loop {
        let frame = tokio::select! {
            frame = read_frame(&mut io, true, MAX_FRAME_PAYLOAD) => Some(frame),
            // An error means the server is gone altogether, which is a shutdown too.
            _ = sockets_stopped.wait_for(|stopped| *stopped) => None,
        };
        let frame = match frame {
            None => return send_close(&mut io, Some(close_code::GOING_AWAY)).await,
            Some(Ok(Some(frame))) => frame,
            Some(Ok(None)) => return Ok(()),
            Some(Err(FrameError::Io(error))) => return Err(error),
            Some(Err(error)) => {
                tracing::debug!(%error, "echo upstream: closing a WebSocket");
                return send_close(&mut io, Some(error.close_code())).await;
            }
        };
        match frame.opcode {
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {
                let continuation = frame.opcode == opcode::CONTINUATION;
                if continuation != in_message {
                    return send_close(&mut io, Some(close_code::PROTOCOL_ERROR)).await;
                }
                in_message = !frame.fin;
                io.write_all(&encode_frame(&frame, None)).await?;
                io.flush().await?;
            }
            opcode::PING => {
                let pong = Frame { fin: true, opcode: opcode::PONG, payload: frame.payload };
                io.write_all(&encode_frame(&pong, None)).await?;
                io.flush().await?;
            }
            opcode::PONG => {}
            _ => {
                // A close: answer with the peer's status code, then end the connection.
                let code = match frame.payload.as_slice() {
                    [] => None,
                    [high, low, ..] => Some(u16::from_be_bytes([*high, *low])),
                    [_] => Some(close_code::PROTOCOL_ERROR),
                };
                return send_close(&mut io, code).await;
            }
        }
    }
}

async fn send_close<S: AsyncWrite + Unpin>(io: &mut S, code: Option<u16>) -> std::io::Result<()> {
    let payload = code.map(|code| code.to_be_bytes().to_vec()).unwrap_or_default();
    let close = Frame { fin: true, opcode: opcode::CLOSE, payload };
    io.write_all(&encode_frame(&close, None)).await?;
    io.flush().await?;
    io.shutdown().await
}

/// WebSocket opcodes (RFC 6455 section 5.2).
mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// WebSocket close status codes (RFC 6455 section 7.4.1).
mod close_code {
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const TOO_BIG: u16 = 1009;
}

/// One WebSocket frame, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
enum FrameError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("frame of {0} bytes is larger than allowed")]
    TooLarge(u64),
}

impl FrameError {
    /// The close status to send the peer for this failure.
    fn close_code(&self) -> u16 {
        match self {
            FrameError::TooLarge(_) => close_code::TOO_BIG,
            FrameError::Io(_) | FrameError::Protocol(_) => close_code::PROTOCOL_ERROR,
        }
    }
}

/// Reads one frame. `Ok(None)` means the peer closed the connection between frames.
///
/// `expect_masked` is true on the server side, where every client frame must be masked
/// (RFC 6455 section 5.1), and false on the client side, where none may be.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    expect_masked: bool,
    max_payload: u64,
) -> Result<Option<Frame>, FrameError> {
    let first = match reader.read_u8().await {
        Ok(byte) => byte,
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    let second = reader.read_u8().await?;
    let fin = first & 0x80 != 0;
    if first & 0x70 != 0 {
        return Err(FrameError::Protocol("reserved bits set without an extension"));
    }
    let opcode = first & 0x0F;
    let control = opcode & 0x08 != 0;
    if !matches!(
        opcode,
        opcode::CONTINUATION | opcode::TEXT | opcode::BINARY | opcode::CLOSE | opcode::PING | opcode::PONG
    ) {
        return Err(FrameError::Protocol("unknown opcode"));
    }
    let masked = second & 0x80 != 0;
    if masked != expect_masked {
        return Err(FrameError::Protocol(if expect_masked {
            "client frames must be masked"
        } else {
            "server frames must not be masked"
        }));
    }
    let len = match second & 0x7F {
        126 => u64::from(reader.read_u16().await?),
        127 => {
            let len = reader.read_u64().await?;
            if len >> 63 != 0 {
                return Err(FrameError::Protocol("64-bit length with the high bit set"));
            }
            len
        }
        len => u64::from(len),
    };
    if control && (!fin || len > 125) {
        return Err(FrameError::Protocol("control frames must be unfragmented and at most 125 bytes"));
    }
    if len > max_payload {
        return Err(FrameError::TooLarge(len));
    }
    let mut mask = [0u8; 4];
    if masked {
        reader.read_exact(&mut mask).await?;
    }
    let len = usize::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    if masked {
        apply_mask(&mut payload, mask);
    }
    Ok(Some(Frame { fin, opcode, payload }))
}

/// Encodes `frame`, masked with `mask` when given (client side) or unmasked (server side).
fn encode_frame(frame: &Frame, mask: Option<[u8; 4]>) -> Vec<u8> {
    let len = frame.payload.len();
    let mut out = Vec::with_capacity(len + 14);
    out.push(if frame.fin { 0x80 } else { 0 } | (frame.opcode & 0x0F));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match len {
        0..=125 => out.push(mask_bit | len as u8),
        126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            let start = out.len();
            out.extend_from_slice(&frame.payload);
            apply_mask(&mut out[start..], mask);
        }
        None => out.extend_from_slice(&frame.payload),
    }
    out
}

fn apply_mask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

// ---------------------------------------------------------------------------------------------
// Small helpers

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    let mut response = Response::new(full(message.to_owned()));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn query_u64(request: &Request<Incoming>, name: &str) -> Option<u64> {
    let query = request.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == name).and_then(|(_, value)| value.parse().ok())
}

/// Whether any `name` header lists `token` among its comma-separated values (case-insensitive).
fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Whether any `name` header contains `needle` (case-insensitive), e.g. a media type in `Accept`.
fn header_contains(headers: &HeaderMap, name: header::HeaderName, needle: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.to_ascii_lowercase().contains(needle))
}

fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use tokio::net::TcpStream;
    use tokio::sync::oneshot;

    async fn start() -> (EchoUpstream, oneshot::Sender<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let echo = EchoUpstream::start(listener, async move {
            let _ = stopped.await;
        })
        .await
        .unwrap();
        (echo, stop)
    }

    fn client() -> Client<hyper_util::client::legacy::connect::HttpConnector, Body> {
        Client::builder(TokioExecutor::new()).build_http()
    }

    async fn get(uri: String, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = client().request(request.body(empty()).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        (parts.status, parts.headers, body.collect().await.unwrap().to_bytes())
    }

    #[test]
    fn frames_round_trip_at_every_length_encoding() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for len in [0usize, 1, 125, 126, 127, 0xFFFF, 0x1_0000, 200_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let frame = Frame { fin: len % 2 == 0, opcode: opcode::BINARY, payload };

            let masked = encode_frame(&frame, Some([0x12, 0x34, 0x56, 0x78]));
            let decoded =
                runtime.block_on(read_frame(&mut masked.as_slice(), true, MAX_FRAME_PAYLOAD)).unwrap().unwrap();
            assert_eq!(decoded, frame, "masked, {len} bytes");

            let unmasked = encode_frame(&frame, None);
            let decoded =
                runtime.block_on(read_frame(&mut unmasked.as_slice(), false, MAX_FRAME_PAYLOAD)).unwrap().unwrap();
            assert_eq!(decoded, frame, "unmasked, {len} bytes");
        }
    }

    #[test]
    fn header_bytes_match_rfc_6455_examples() {
        // RFC 6455 section 5.7: a single-frame masked text message "Hello".
        let hello = Frame { fin: true, opcode: opcode::TEXT, payload: b"Hello".to_vec() };
        assert_eq!(
            encode_frame(&hello, Some([0x37, 0xfa, 0x21, 0x3d])),
            [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        );
        assert_eq!(encode_frame(&hello, None), [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]);
        // 256 bytes binary message in a single unmasked frame: 0x82 0x7E 0x0100.
        let big = Frame { fin: true, opcode: opcode::BINARY, payload: vec![0; 256] };
        assert_eq!(&encode_frame(&big, None)[..4], [0x82, 0x7E, 0x01, 0x00]);
    }

    #[test]
    fn malformed_frames_are_rejected() {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let read = |bytes: &[u8], masked: bool, max: u64| {
            let mut bytes = bytes;
            runtime.block_on(read_frame(&mut bytes, masked, max))
        };
        // An unmasked client frame.
        assert!(matches!(read(&[0x81, 0x00], true, 1024), Err(FrameError::Protocol(_))));
        // A masked server frame.
        assert!(matches!(read(&[0x81, 0x80, 0, 0, 0, 0], false, 1024), Err(FrameError::Protocol(_))));
        // Reserved bits.
        assert!(matches!(read(&[0xC1, 0x80, 0, 0, 0, 0], true, 1024), Err(FrameError::Protocol(_))));
        // Unknown opcode.
        assert!(matches!(read(&[0x83, 0x80, 0, 0, 0, 0], true, 1024), Err(FrameError::Protocol(_))));
        // Fragmented ping, and a ping longer than 125 bytes.
        assert!(matches!(read(&[0x09, 0x80, 0, 0, 0, 0], true, 1024), Err(FrameError::Protocol(_))));
        assert!(matches!(read(&[0x89, 0xFE, 0, 126], true, 1024), Err(FrameError::Protocol(_))));
        // Over the size limit, refused before any payload is read.
        assert!(matches!(read(&[0x82, 0xFE, 0x10, 0x00], true, 1024), Err(FrameError::TooLarge(4096))));
        assert!(matches!(read(&[0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0], true, u64::MAX), Err(FrameError::Protocol(_))));
        // Truncated frame, and a clean end between frames.
        assert!(matches!(read(&[0x82, 0x85, 1, 2], true, 1024), Err(FrameError::Io(_))));
        assert!(matches!(read(&[], true, 1024), Ok(None)));
    }

    #[test]
    fn accept_key_matches_rfc_6455_example() {
        assert_eq!(websocket_accept(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[tokio::test]
    async fn echoes_method_uri_and_headers_as_json() {
        let (echo, _stop) = start().await;
        let (status, headers, body) = get(
            format!("{}/some/path?a=1&b=two", echo.url()),
            &[("x-forwarded-user", "alice"), ("x-multi", "one"), ("x-multi", "two")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "application/json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["method"], "GET");
        assert_eq!(json["uri"], "/some/path?a=1&b=two");
        assert_eq!(json["version"], "HTTP/1.1");
        let headers = json["headers"].as_array().unwrap();
        assert!(headers.contains(&json!(["x-forwarded-user", "alice"])));
        let multi: Vec<_> = headers.iter().filter(|pair| pair[0] == "x-multi").collect();
        assert_eq!(multi, [&json!(["x-multi", "one"]), &json!(["x-multi", "two"])]);
        assert_eq!(json["body_bytes"], 0);
    }

    #[tokio::test]
    async fn browsers_get_an_escaped_html_page_with_identity_headers_highlighted() {
        let (echo, _stop) = start().await;
        let (status, headers, body) = get(
            format!("{}/", echo.url()),
            &[("accept", "text/html,application/xhtml+xml"), ("x-postern-user", "<script>")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let page = String::from_utf8(body.to_vec()).unwrap();
        assert!(page.contains("<title>Echo upstream</title>"));
        assert!(page.contains("it shows the headers Postern sent it"));
        assert!(page.contains("<tr class=\"identity\"><th scope=\"row\">x-postern-user</th><td>&lt;script&gt;</td>"));
        assert!(!page.contains("<script>"));
    }

    #[tokio::test]
    async fn upload_counts_a_streamed_body() {
        let (echo, _stop) = start().await;
        let (sender, receiver) = tokio::sync::mpsc::channel::<Bytes>(4);
        let body = boxed(ChannelBody(receiver));
        let request = Request::post(format!("{}/upload", echo.url())).body(body).unwrap();
        let response = tokio::spawn(client().request(request));
        for _ in 0..10 {
            sender.send(Bytes::from(vec![b'x'; 100_000])).await.unwrap();
        }
        drop(sender);
        let response = response.await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let json: serde_json::Value =
            serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert_eq!(json["received_bytes"], 1_000_000);
        let expected = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &vec![b'x'; 1_000_000]);
        let expected: String = expected.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(json["sha256"], expected);
    }

    /// A request body fed chunk by chunk from a channel, like a slow client's upload.
    struct ChannelBody(tokio::sync::mpsc::Receiver<Bytes>);

    impl http_body::Body for ChannelBody {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<BodyFrame<Bytes>, BoxError>>> {
            self.0.poll_recv(cx).map(|chunk| chunk.map(|chunk| Ok(BodyFrame::data(chunk))))
        }
    }

    #[tokio::test]
    async fn download_streams_the_pattern_with_a_content_length() {
        let (echo, _stop) = start().await;
        let len = 3 * DOWNLOAD_CHUNK as u64 + 1000;
        let (status, headers, body) = get(format!("{}/download?bytes={len}", echo.url()), &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_LENGTH], len.to_string().as_str());
        assert_eq!(body.len() as u64, len);
        assert!(body.iter().enumerate().all(|(i, byte)| *byte == (i % 256) as u8));

        let (status, _, body) = get(format!("{}/download?bytes=0", echo.url()), &[]).await;
        assert_eq!((status, body.len()), (StatusCode::OK, 0));
        let (status, _, _) = get(format!("{}/download?bytes=lots", echo.url()), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn status_and_slow_endpoints() {
        let (echo, _stop) = start().await;
        assert_eq!(get(format!("{}/status/503", echo.url()), &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(get(format!("{}/status/204", echo.url()), &[]).await.0, StatusCode::NO_CONTENT);
        assert_eq!(get(format!("{}/status/101", echo.url()), &[]).await.0, StatusCode::BAD_REQUEST);
        assert_eq!(get(format!("{}/status/abc", echo.url()), &[]).await.0, StatusCode::BAD_REQUEST);
        let (status, _, body) = get(format!("{}/slow?ms=20", echo.url()), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["uri"], "/slow?ms=20");
        assert_eq!(get(format!("{}/slow", echo.url()), &[]).await.0, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn websocket_echo_with_a_raw_client() {
        let (echo, _stop) = start().await;
        let mut stream = TcpStream::connect(echo.addr()).await.unwrap();
        stream
            .write_all(
                b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut stream = BufReader::new(stream);
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            let mut line = String::new();
            tokio::io::AsyncBufReadExt::read_line(&mut stream, &mut line).await.unwrap();
            assert!(!line.is_empty());
            head.push_str(&line);
        }
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        assert!(head.to_ascii_lowercase().contains("sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo="));

        let mask = Some([1, 2, 3, 4]);
        let frames = [
            Frame { fin: true, opcode: opcode::TEXT, payload: b"hello".to_vec() },
            Frame { fin: false, opcode: opcode::BINARY, payload: vec![0xFF; 70_000] },
            Frame { fin: true, opcode: opcode::CONTINUATION, payload: vec![1, 2, 3] },
        ];
        for frame in &frames {
            stream.write_all(&encode_frame(frame, mask)).await.unwrap();
            let echoed = read_frame(&mut stream, false, MAX_FRAME_PAYLOAD).await.unwrap().unwrap();
            assert_eq!(&echoed, frame);
        }
        let ping = Frame { fin: true, opcode: opcode::PING, payload: b"are you there".to_vec() };
        stream.write_all(&encode_frame(&ping, mask)).await.unwrap();
        let pong = read_frame(&mut stream, false, MAX_FRAME_PAYLOAD).await.unwrap().unwrap();
        assert_eq!((pong.opcode, pong.payload), (opcode::PONG, ping.payload));

        let close = Frame { fin: true, opcode: opcode::CLOSE, payload: 1000u16.to_be_bytes().to_vec() };
        stream.write_all(&encode_frame(&close, mask)).await.unwrap();
        let reply = read_frame(&mut stream, false, MAX_FRAME_PAYLOAD).await.unwrap().unwrap();
        assert_eq!(reply, close);
        assert!(read_frame(&mut stream, false, MAX_FRAME_PAYLOAD).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn unmasked_client_frames_close_the_socket_with_a_protocol_error() {
        let (echo, _stop) = start().await;
        let stream = TcpStream::connect(echo.addr()).await.unwrap();
        let mut stream = BufReader::new(stream);
        stream
            .write_all(
                b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            )
            .await
            .unwrap();
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            tokio::io::AsyncBufReadExt::read_line(&mut stream, &mut head).await.unwrap();
        }
        let text = Frame { fin: true, opcode: opcode::TEXT, payload: b"hi".to_vec() };
        stream.write_all(&encode_frame(&text, None)).await.unwrap();
        let reply = read_frame(&mut stream, false, MAX_FRAME_PAYLOAD).await.unwrap().unwrap();
        assert_eq!(reply.opcode, opcode::CLOSE);
        assert_eq!(reply.payload, close_code::PROTOCOL_ERROR.to_be_bytes());
    }

    #[tokio::test]
    async fn websocket_echo_works_with_tungstenite_and_closes_on_shutdown() {
        use tokio_tungstenite::tungstenite::{self, Message};
        let (echo, stop) = start().await;
        let url = format!("ws://{}/socket", echo.addr());
        let (result, socket) = tokio::task::spawn_blocking(move || {
            let (mut socket, response) = tungstenite::connect(url).unwrap();
            assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
            socket.send(Message::text("hello over websocket")).unwrap();
            let text = socket.read().unwrap();
            socket.send(Message::binary(vec![7u8; 100_000])).unwrap();
            let binary = socket.read().unwrap();
            ((text, binary), socket)
        })
        .await
        .unwrap();
        assert_eq!(result.0, Message::text("hello over websocket"));
        assert_eq!(result.1, Message::binary(vec![7u8; 100_000]));

        stop.send(()).unwrap();
        let closed = tokio::task::spawn_blocking(move || {
            let mut socket = socket;
            loop {
                match socket.read() {
                    Ok(Message::Close(frame)) => return frame.map(|frame| u16::from(frame.code)),
                    Ok(_) => continue,
                    Err(error) => panic!("expected a close frame, got {error}"),
                }
            }
        })
        .await
        .unwrap();
        assert_eq!(closed, Some(close_code::GOING_AWAY));
    }

    #[tokio::test]
    async fn bad_websocket_handshakes_are_refused() {
        let (echo, _stop) = start().await;
        let base = [("upgrade", "websocket"), ("connection", "upgrade")];
        let no_key = get(format!("{}/", echo.url()), &[base[0], base[1], ("sec-websocket-version", "13")]).await;
        assert_eq!(no_key.0, StatusCode::BAD_REQUEST);
        let old_version = get(
            format!("{}/", echo.url()),
            &[base[0], base[1], ("sec-websocket-version", "8"), ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")],
        )
        .await;
        assert_eq!(old_version.0, StatusCode::UPGRADE_REQUIRED);
        assert_eq!(old_version.1[header::SEC_WEBSOCKET_VERSION], "13");
    }
}
