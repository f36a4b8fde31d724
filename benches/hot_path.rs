//! The per-request costs of an authenticated request, apart from the network: opening the session cookie and
//! finding the session among 100,000, and issuing the identity assertion (reused, and freshly signed).
//! Run: `cargo bench --bench hot_path`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

mod common;

use common::{identity, session_config};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use postern::assertion::{AssertionSigner, generate_key_pem};
use postern::clock::Clock;
use postern::session::Sessions;
use postern::session::cookie::CookieCodec;
use postern::state::State;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sessions = Sessions::new(State::memory_store(), session_config(), Clock::system());
    let codec = CookieCodec::new(&[b"bench session key, not a secret, long enough for hkdf"], true);
    let mut cookies = Vec::new();
    rt.block_on(async {
        for i in 0..100_000u32 {
            let session = sessions.create(identity(i), None, None).await.unwrap();
            if i % 1000 == 0 {
                let cookie = codec.session_cookie(session.id.expose(), Duration::from_secs(3600)).unwrap();
                cookies.push(cookie.stripped().to_string());
            }
        }
    });
    let headers: Vec<HeaderMap> = cookies
        .iter()
        .map(|c| {
            let mut h = HeaderMap::new();
            h.insert(header::COOKIE, HeaderValue::from_str(c).unwrap());
            h
        })
        .collect();
    let mut n = 0usize;
    c.bench_function("session: open the cookie and find the session among 100k", |b| {
        b.iter(|| {
            n = (n + 1) % headers.len();
            let ticket = codec.session_ticket(&headers[n]).unwrap();
            black_box(rt.block_on(sessions.get(&ticket)).unwrap().unwrap());
        })
    });

    let signer = AssertionSigner::new(
        &generate_key_pem().unwrap(),
        "https://devtools.example.com".into(),
        Duration::from_secs(300),
        Clock::system(),
    )
    .unwrap();
    let alice = identity(1);
    let groups = ["5b1c3d2e-0000-0000-0000-000000000001"];
    c.bench_function("assertion: reused for the same session and upstream", |b| {
        b.iter(|| black_box(signer.assertion(&alice, "https://gitlab.example.com", &groups, "session-1")))
    });
    let mut k = 0u64;
    c.bench_function("assertion: freshly signed (ES256)", |b| {
        b.iter(|| {
            k += 1;
            black_box(signer.assertion(&alice, "https://gitlab.example.com", &groups, &k.to_string()))
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
