//! Faults, with real servers on loopback: the provider goes down while people and services are using Postern;
//! the provider rotates its signing key while a client keeps sending; upstreams that refuse connections or
//! drop a response halfway. Postern keeps deciding correctly, fails closed, and nothing piles up.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use postern::demo::DEMO_POLICY;
use postern::demo::provider::{DEMO_APP_OID, DEMO_APP_ROLES};
use serde_json::json;

use crate::support::from_files::{Options, Postern, start_postern};
use crate::support::*;

/// The requests in flight, from the admin listener's metrics.
async fn in_flight(postern: &Postern) -> f64 {
    let metrics = Client::new().get(postern.admin("/metrics")).send().await.text();
    metrics
        .lines()
        .find(|l| l.starts_with("postern_in_flight_requests "))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .expect("the in-flight gauge")
}

#[tokio::test]
async fn while_the_provider_is_down_signed_in_users_and_known_bearer_tokens_keep_working() {
    let postern = start_postern(Options::default()).await;
    let alice = sign_in_at(&postern.url, "alice").await;
    let cached = client_credentials_token(&postern.stack.provider).await;
    assert_eq!(Client::new().get(postern.at("/deploy")).bearer(&cached).send().await.status, StatusCode::OK);
    // Signed offline with the key Postern already has: valid, but never seen by Postern.
    let unseen = postern
        .stack
        .provider
        .mint_access_token(json!({"sub": "postern-demo", "oid": DEMO_APP_OID, "roles": DEMO_APP_ROLES}));

    postern.stack.stop_provider();
    let provider_addr: SocketAddr = postern.stack.provider.addr();
    let mut down = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(provider_addr).await.is_err() {
            down = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(down, "the provider refuses connections");

    let page = alice.get(postern.at("/tools")).api().send().await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert_eq!(page.upstream().get("x-forwarded-user"), Some(user("alice").oid));
    let again = Client::new().get(postern.at("/deploy")).bearer(&cached).send().await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text());
    let fresh = Client::new().get(postern.at("/deploy")).bearer(&unseen).send().await;
    assert_eq!(fresh.status, StatusCode::OK, "keys already fetched still verify: {}", fresh.text());

    // Someone new cannot sign in: a clear page, not a loop, and no session.
    let stranger = Client::new();
    let r = stranger.get(postern.at("/oauth2/start?rd=/")).browser().send().await;
    assert!(r.status.is_server_error() || r.status == StatusCode::FOUND, "{}: {}", r.status, r.text());
    if r.status == StatusCode::FOUND {
        // Redirected to the provider, which is down: the browser stops there.
        assert!(r.location().starts_with(&postern.stack.provider.issuer()), "{}", r.location());
    } else {
        assert!(r.text().contains("request_id") || r.text().contains("Request id"), "{}", r.text());
    }
    assert!(stranger.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn a_signing_key_rotation_while_a_client_keeps_sending_fails_no_request() {
    let postern = Arc::new(start_postern(Options::default()).await);
    let alice = Arc::new(sign_in_at(&postern.url, "alice").await);
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));

    let sender = {
        let (postern, alice, stop, sent, failed) =
            (postern.clone(), alice.clone(), stop.clone(), sent.clone(), failed.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // A token never seen before each time, signed with whatever key the provider signs with now.
                let token = postern.stack.provider.mint_access_token(
                    json!({"sub": "postern-demo", "oid": DEMO_APP_OID, "roles": DEMO_APP_ROLES, "jti": format!("t{n}")}),
                );
                let bearer = Client::new().get(postern.at("/deploy")).bearer(&token).send().await;
                let session = alice.get(postern.at("/tools")).api().send().await;
                sent.fetch_add(2, Ordering::Relaxed);
                for (what, status) in [("bearer", bearer.status), ("session", session.status)] {
                    if status != StatusCode::OK {
                        eprintln!("{what} request failed with {status}");
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(400)).await;
    let before = sent.load(Ordering::Relaxed);
    // The provider starts signing with a new key at once (a real provider publishes it days ahead; this is
    // the hard case): the first token naming it makes Postern refetch the keys, within that request.
    postern.stack.provider.rotate_signing_key();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop.store(true, Ordering::Relaxed);
    sender.await.expect("the sender ran");

    assert!(before > 4, "the client was sending before the rotation: {before}");
    assert!(sent.load(Ordering::Relaxed) > before + 4, "and after it: {}", sent.load(Ordering::Relaxed));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed across the rotation");
    // And someone signing in now gets an ID token signed with the newest key, which Postern accepts.
    let bob = sign_in_at(&postern.url, "bob").await;
    assert_eq!(bob.get(postern.at("/tools")).api().send().await.status, StatusCode::OK);
}

/// An upstream that answers every request with `Content-Length: 100000`, sends 100 bytes and hangs up.
async fn dropping_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n").await;
                let _ = stream.write_all(&[b'x'; 100]).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    addr
}

/// An upstream that accepts connections and closes them at once, answering nothing.
async fn hanging_up_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("an address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    addr
}

#[tokio::test]
async fn upstreams_that_hang_up_or_drop_a_response_halfway_fail_fast_and_leave_nothing_in_flight() {
    let (dropping, hanging_up) = (dropping_upstream().await, hanging_up_upstream().await);
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("an address")
    };
    let route = |name: &str, addr: SocketAddr| {
        format!(
            "[[route]]\nname = \"{name}\"\nhost = \"*\"\npath = \"/{name}\"\nupstream = \"http://{addr}\"\npublic = true\ntimeout = \"3s\"\n"
        )
    };
    let postern = start_postern(Options {
        policy: format!(
            "{DEMO_POLICY}\n{}\n{}\n{}",
            route("dropping", dropping),
            route("hanging-up", hanging_up),
            route("refused", refused)
        ),
        ..Options::default()
    })
    .await;

    for _ in 0..5 {
        let started = Instant::now();
        let refused = Client::new().get(postern.at("/refused")).api().send().await;
        assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.text());
        assert_eq!(refused.json()["error"], "upstream-unreachable");
        let hung_up = Client::new().get(postern.at("/hanging-up")).api().send().await;
        assert_eq!(hung_up.status, StatusCode::BAD_GATEWAY, "{}", hung_up.text());
        assert_eq!(hung_up.json()["error"], "upstream-bad-response");
        assert!(started.elapsed() < Duration::from_secs(2), "failed fast, well within the route's timeout");

        // Headers were already on their way: the client sees the response end early, not a hang.
        let started = Instant::now();
        let addr = postern.addr;
        let received = tokio::task::spawn_blocking(move || {
            use std::io::{Read as _, Write as _};
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(5))).expect("a read timeout");
            stream.write_all(b"GET /dropping HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").expect("write");
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
            answer
        })
        .await
        .expect("ran");
        let text = String::from_utf8_lossy(&received);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.len()).unwrap_or(0);
        assert!(body < 100_000, "the client did not get a complete-looking body: {body} bytes");
        assert!(started.elapsed() < Duration::from_secs(3), "the broken response ended promptly");
    }

    // Nothing piles up: every request above has left.
    let mut settled = false;
    for _ in 0..50 {
        if in_flight(&postern).await == 0.0 {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(settled, "no request is left in flight");
    assert_eq!(Client::new().get(postern.at("/public")).api().send().await.status, StatusCode::OK);
}
