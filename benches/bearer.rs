//! Bearer-token validation: a fresh RS256 token (signature check), a cached valid token, a cached refused token.
//! Run: `cargo bench --bench bearer`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use postern::clock::Clock;
use postern::config::{BearerConfig, ClientAuth, ClientCredential, OidcConfig, SecretSource};
use postern::demo::provider::{DevProvider, DevProviderConfig};
use postern::http_client::HttpClient;
use postern::jwt::{self, Expectations};
use postern::oidc::Provider;
use postern::secret::Secret;
use postern::token::BearerValidator;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let (_stop, stop_rx) = tokio::sync::watch::channel(false);
    let (validator, provider, dev) = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut stop = stop_rx;
        let dev = DevProvider::start(listener, DevProviderConfig::default(), async move {
            let _ = stop.changed().await;
        })
        .await
        .unwrap();
        let http = HttpClient::new(None, Duration::from_secs(5)).unwrap();
        let oidc = OidcConfig {
            issuer: dev.issuer(),
            discovery_url: postern::oidc::provider::discovery_url(&dev.issuer()).unwrap(),
            allowed_tenants: vec![],
            client_id: dev.config().client_id.clone(),
            credential: ClientCredential::Secret {
                current: SecretSource::Value(Secret::new(dev.config().client_secret.clone())),
                previous: None,
                method: ClientAuth::SecretBasic,
            },
            scopes: vec!["openid".into()],
            ca_file: None,
            jwks_refetch_interval: Duration::from_secs(300),
            leeway: Duration::from_secs(60),
        };
        let provider =
            Arc::new(Provider::new(oidc, http.clone(), "http://127.0.0.1/oauth2/callback".into(), Clock::system()));
        let bearer = BearerConfig {
            provider_audiences: vec![dev.config().access_token_audience.clone()],
            issuers: vec![],
            cache_size: 100_000,
            max_token_bytes: 16 * 1024,
        };
        let validator = BearerValidator::new(
            &bearer,
            provider.clone(),
            http,
            Duration::from_secs(60),
            Duration::from_secs(300),
            Clock::system(),
        );
        (validator, provider, dev)
    });
    let token = dev.mint_access_token(json!({"sub": "svc", "roles": ["Deploy.Write"]}));
    let bad = format!("{}x", &token[..token.len() - 1]);
    let keys = rt.block_on(provider.keys()).unwrap();
    let audiences = vec![dev.config().access_token_audience.clone()];
    let issuer = dev.issuer();

    c.bench_function("bearer/fresh_rs256_verify", |b| {
        b.iter(|| {
            let expect = Expectations {
                issuer: &issuer,
                allowed_tenants: &[],
                audiences: &audiences,
                algorithms: &[],
                leeway: 60,
                now: Clock::system().now(),
                nonce: None,
                client_id: None,
            };
            rt.block_on(jwt::verify(black_box(&token), &keys, &expect)).unwrap()
        })
    });
    rt.block_on(validator.validate(&token, None)).unwrap();
    c.bench_function("bearer/cached_valid", |b| {
        b.iter(|| rt.block_on(validator.validate(black_box(&token), None)).unwrap())
    });
    assert!(rt.block_on(validator.validate(&bad, None)).is_err());
    c.bench_function("bearer/cached_refused", |b| {
        b.iter(|| rt.block_on(validator.validate(black_box(&bad), None)).unwrap_err())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
