//! Upstream connections: an HTTP/1 client connection keeps one upstream connection for its requests
//! (`[limits] upstream_connection_per_client`), every request still reaches the upstream its route names, and a
//! kept connection the upstream has closed is replaced without the client noticing.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::from_files::{Options, Postern, start_postern};

/// A raw HTTP/1.1 upstream answering every request with its own name, counting connections and requests.
#[derive(Clone)]
struct Counting {
    port: u16,
    connections: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

impl Counting {
    /// `close_after_each`: after each answer (sent keep-alive, without `Connection: close`) the upstream waits a
    /// moment and closes the connection, as an upstream whose keep-alive timeout ran out does.
    async fn start(name: &'static str, close_after_each: bool) -> Counting {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counting =
            Counting { port, connections: Arc::new(AtomicUsize::new(0)), requests: Arc::new(AtomicUsize::new(0)) };
        let c = counting.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, name, c.requests.clone(), close_after_each));
            }
        });
        counting
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

async fn serve(mut stream: TcpStream, name: &'static str, requests: Arc<AtomicUsize>, close_after_each: bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Requests here have no body: a head ends the request.
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        requests.fetch_add(1, Ordering::SeqCst);
        let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}", name.len());
        if stream.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if close_after_each {
            tokio::time::sleep(Duration::from_millis(30)).await;
            return;
        }
    }
}

fn policy(a: &Counting, b: &Counting) -> String {
    format!(
        r#"
[[route]]
name = "a"
host = "*"
path = "/a/**"
upstream = "http://127.0.0.1:{}"
public = true

[[route]]
name = "b"
host = "*"
path = "/b/**"
upstream = "http://127.0.0.1:{}"
public = true
"#,
        a.port, b.port
    )
}

/// One client connection to Postern, speaking HTTP/1.1.
struct Connection {
    sender: http1::SendRequest<Empty<Bytes>>,
}

impl Connection {
    async fn open(postern: &Postern) -> Connection {
        let stream = TcpStream::connect(postern.addr).await.unwrap();
        let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(connection);
        Connection { sender }
    }

    async fn get(&mut self, path: &str) -> (StatusCode, String) {
        self.sender.ready().await.unwrap();
        let req = Request::get(path).header("host", "tools.test").body(Empty::new()).unwrap();
        let response = self.sender.send_request(req).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

/// Upstreams A (closing its connection after each answer when `a_closes`) and B, and Postern routing `/a/` and
/// `/b/` to them.
async fn start(a_closes: bool, config_extra: &str) -> (Counting, Counting, Postern) {
    let (a, b) = (Counting::start("A", a_closes).await, Counting::start("B", false).await);
    let options = Options { policy: policy(&a, &b), config_extra: config_extra.to_string(), ..Options::default() };
    let postern = start_postern(options).await;
    (a, b, postern)
}

#[tokio::test]
async fn an_http1_client_connection_keeps_one_upstream_connection_for_all_its_requests() {
    let (a, _b, postern) = start(false, "").await;

    let mut first = Connection::open(&postern).await;
    for i in 0..5 {
        assert_eq!(first.get(&format!("/a/{i}")).await, (StatusCode::OK, "A".to_string()));
    }
    assert_eq!((a.connections(), a.requests()), (1, 5), "five requests, one upstream connection");

    let mut second = Connection::open(&postern).await;
    for i in 0..3 {
        assert_eq!(second.get(&format!("/a/{i}")).await, (StatusCode::OK, "A".to_string()));
    }
    assert_eq!((a.connections(), a.requests()), (2, 8), "each client connection has its own");
}

#[tokio::test]
async fn every_request_on_one_client_connection_reaches_the_upstream_its_route_names() {
    let (a, b, postern) = start(false, "").await;

    let mut conn = Connection::open(&postern).await;
    for path in ["/a/1", "/b/1", "/b/2", "/a/2", "/b/3", "/a/3", "/a/4"] {
        let expected = if path.starts_with("/a/") { "A" } else { "B" };
        assert_eq!(conn.get(path).await, (StatusCode::OK, expected.to_string()), "{path}");
    }
    assert_eq!((a.requests(), b.requests()), (4, 3));
}

#[tokio::test]
async fn a_kept_upstream_connection_the_upstream_closed_is_replaced_unnoticed() {
    let (a, _b, postern) = start(true, "").await;

    let mut conn = Connection::open(&postern).await;
    for i in 0..4 {
        assert_eq!(conn.get(&format!("/a/{i}")).await, (StatusCode::OK, "A".to_string()), "request {i}");
        // Let the upstream close the connection it just answered on.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((a.connections(), a.requests()), (4, 4), "a new upstream connection for each request");
}

#[tokio::test]
async fn with_connection_per_client_off_requests_share_the_pool() {
    let (a, _b, postern) = start(false, "[limits]\nupstream_connection_per_client = false\n").await;

    // More client connections, one after another, than Postern has worker threads (each keeps a pool).
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    for _ in 0..=workers {
        let mut conn = Connection::open(&postern).await;
        assert_eq!(conn.get("/a/x").await, (StatusCode::OK, "A".to_string()));
        assert_eq!(conn.get("/b/x").await, (StatusCode::OK, "B".to_string()));
    }
    assert!(a.connections() <= workers, "{} upstream connections for {} clients", a.connections(), workers + 1);
    assert_eq!(a.requests(), workers + 1);
}
