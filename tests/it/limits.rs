//! Limits with clear answers (`[limits]` and a route's `max_body`): an oversized request head is 431; a body
//! over the route's limit is 413, whether announced or streamed; a client that dawdles over its headers, or a
//! keep-alive connection nobody uses, is closed; beyond `max_connections` and `max_in_flight` Postern answers
//! 503 with `Retry-After` instead of queueing; the upstream pool keeps only so many idle connections, for so
//! long.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use postern::demo::DEMO_POLICY;

use crate::support::from_files::{Options, Postern, start_postern};
use crate::support::*;

/// The demo policy plus public routes to the echo: `/public` (limits from `[limits]`), `/small` (1 KiB
/// bodies at most) and `/slow?ms=N`.
async fn start_with_limits(limits: &str) -> Postern {
    start_postern(Options {
        policy: format!(
            r#"{DEMO_POLICY}
[[route]]
name = "small"
host = "*"
path = "/small"
upstream = "http://127.0.0.1:8081/upload"
public = true
max_body = "1KiB"

[[route]]
name = "slow"
host = "*"
path = "/slow"
upstream = "http://127.0.0.1:8081"
public = true
"#
        ),
        config_extra: format!("[limits]\n{limits}\n"),
        ..Options::default()
    })
    .await
}

/// Writes `request` on a new connection and reads until the server closes it (or 5 s pass); returns what came
/// back.
fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(5))).expect("a read timeout");
    stream.write_all(request).expect("write");
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// True when the server closes `stream` within `within` (a read returns end of file or a reset).
fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).expect("a read timeout");
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test]
async fn a_request_head_larger_than_max_header_bytes_is_431() {
    let postern = start_with_limits("max_header_bytes = \"16KiB\"").await;
    let addr = postern.addr;

    let big = "x".repeat(20 * 1024);
    let answer = tokio::task::spawn_blocking(move || {
        exchange(
            addr,
            format!("GET /public HTTP/1.1\r\nHost: a\r\nX-Big: {big}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    })
    .await
    .expect("ran");
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let fine = Client::new().get(postern.at("/public")).api().header("x-fine", &"y".repeat(8 * 1024)).send().await;
    assert_eq!(fine.status, StatusCode::OK, "a head under the limit passes");
}

#[tokio::test]
async fn a_body_over_the_routes_max_body_is_413_announced_or_streamed() {
    let postern = start_with_limits("").await;

    let announced = Client::new().post(postern.at("/small")).api().body(vec![b'a'; 2048]).send().await;
    assert_eq!(announced.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", announced.text());
    assert_eq!(announced.json()["error"], "body-too-large");

    // Chunked, so no Content-Length announces the size: cut off once it passes 1 KiB.
    let addr = postern.addr;
    let answer = tokio::task::spawn_blocking(move || {
        let chunk = "a".repeat(512);
        let mut request = String::from(
            "POST /small HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        );
        for _ in 0..8 {
            request.push_str(&format!("200\r\n{chunk}\r\n"));
        }
        request.push_str("0\r\n\r\n");
        exchange(addr, request.as_bytes())
    })
    .await
    .expect("ran");
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let small = Client::new().post(postern.at("/small")).api().body(vec![b'a'; 1000]).send().await;
    assert_eq!(small.status, StatusCode::OK, "{}", small.text());
}

#[tokio::test]
async fn a_client_slower_than_header_read_timeout_is_disconnected() {
    let postern = start_with_limits("header_read_timeout = \"300ms\"").await;
    let addr = postern.addr;

    let closed = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).expect("connect");
        stream.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\n").expect("write");
        closed_within(&mut stream, Duration::from_secs(3))
    })
    .await
    .expect("ran");

    assert!(closed, "the connection was closed while the headers were still incomplete");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_idle_timeout_and_a_busy_one_is_not() {
    let postern = start_with_limits("idle_timeout = \"400ms\"\nheader_read_timeout = \"30s\"").await;
    let addr = postern.addr;

    let (idle_closed, busy_answer) = tokio::task::spawn_blocking(move || {
        let mut idle = TcpStream::connect(addr).expect("connect");
        idle.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\n\r\n").expect("write");
        let mut first = [0u8; 16];
        idle.read_exact(&mut first).expect("the first answer");
        let started = Instant::now();
        let idle_closed =
            closed_within(&mut idle, Duration::from_secs(3)) && started.elapsed() >= Duration::from_millis(300);
        // A request that takes longer than the idle timeout is not cut.
        let busy = exchange(
            addr,
            b"GET /slow?ms=1200 HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        );
        (idle_closed, busy)
    })
    .await
    .expect("ran");

    assert!(idle_closed, "the idle connection was closed after about 400 ms");
    assert!(busy_answer.starts_with("HTTP/1.1 200"), "the slow request got its answer: {busy_answer}");
}

#[tokio::test]
async fn beyond_max_connections_a_new_connection_gets_503_with_retry_after() {
    let postern = start_with_limits("max_connections = 2").await;
    let addr = postern.addr;

    let answer = tokio::task::spawn_blocking(move || {
        // Two connections held open (each has sent a request and got its answer).
        let held: Vec<TcpStream> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(addr).expect("connect");
                s.write_all(b"GET /public HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\n\r\n").expect("write");
                let mut first = [0u8; 12];
                s.read_exact(&mut first).expect("an answer");
                s
            })
            .collect();
        let third = exchange(addr, b"GET /public HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
        drop(held);
        third
    })
    .await
    .expect("ran");

    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("retry-after: 1"), "{answer}");
    // Once the held connections are gone, new ones are served again.
    let mut served = false;
    for _ in 0..50 {
        if Client::new().get(postern.at("/public")).api().send().await.status == StatusCode::OK {
            served = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(served);
}

#[tokio::test]
async fn beyond_max_in_flight_a_request_gets_503_with_retry_after_at_once() {
    let postern = start_with_limits("max_in_flight = 1").await;
    let slow = {
        let url = postern.at("/slow?ms=1500");
        tokio::spawn(async move { Client::new().get(url).api().send().await })
    };
    // Wait until the slow request is in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let started = Instant::now();
    let shed = Client::new().get(postern.at("/public")).api().send().await;

    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE, "{}", shed.text());
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.json()["error"], "overloaded");
    assert!(started.elapsed() < Duration::from_millis(1000), "shed at once, not queued");
    assert_eq!(slow.await.expect("ran").status, StatusCode::OK, "the request in flight finished");
}

/// A tiny upstream counting its open connections; each answer takes 100 ms so that concurrent requests need
/// connections of their own.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    let open = Arc::new(AtomicUsize::new(0));
    let counter = open.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let open = counter.clone();
            open.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                let mut pending = Vec::new();
                loop {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        pending.drain(..end + 4);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
                    }
                }
                open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, open)
}

#[tokio::test]
async fn the_upstream_pool_keeps_at_most_its_idle_bound_and_closes_idle_connections_in_time() {
    let (upstream, open) = counting_upstream().await;
    let postern = start_postern(Options {
        policy: format!(
            "{DEMO_POLICY}\n[[route]]\nname = \"counted\"\nhost = \"*\"\npath = \"/counted\"\nupstream = \"http://{upstream}\"\npublic = true\n"
        ),
        config_extra: "[limits]\nupstream_max_idle_per_host = 1\nupstream_idle_timeout = \"500ms\"\n".to_string(),
        ..Options::default()
    })
    .await;

    let requests: Vec<_> = (0..6)
        .map(|_| {
            let url = postern.at("/counted");
            tokio::spawn(async move { Client::new().get(url).api().send().await.status })
        })
        .collect();
    for r in requests {
        assert_eq!(r.await.expect("ran"), StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Each worker thread (one per core) keeps its share of the bound, at least one.
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let kept = open.load(Ordering::SeqCst);
    assert!(kept <= workers, "at most one idle connection per worker kept ({workers} workers): {kept}");

    let mut all_closed = false;
    for _ in 0..60 {
        if open.load(Ordering::SeqCst) == 0 {
            all_closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(all_closed, "the idle connection was closed after upstream_idle_timeout");
}
