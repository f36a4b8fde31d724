//! Policy decisions at scale: route lookup plus rule evaluation with 10,000 routes over 1,000 hosts.
//! Run: `cargo bench --bench policy`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{Criterion, criterion_group, criterion_main};
use http::Method;
use postern::identity::{Identity, Proof};
use postern::policy::{decide, load_sources};
use serde_json::json;

fn policy_text(hosts: usize, routes_per_host: usize) -> String {
    let mut text = String::from("[groups]\neng = \"5b1c3d2e-0000-0000-0000-000000000001\"\n");
    for h in 0..hosts {
        for r in 0..routes_per_host {
            let path = if r == 0 { "/".to_string() } else { format!("/section{r}/area") };
            text.push_str(&format!(
                "[[route]]\nname = \"h{h}-r{r}\"\nhost = \"tool{h}.example.com\"\npath = \"{path}\"\nupstream = \"http://10.0.{}.{}:8080\"\nallow = [{{ groups = [\"eng\"] }}, {{ roles = [\"Reader\"] }}]\ndeny = [{{ users = [\"blocked-{h}\"] }}]\n",
                h % 250,
                r % 250
            ));
        }
    }
    text
}

fn bench(c: &mut Criterion) {
    let text = policy_text(1000, 10);
    let (policy, _) = load_sources(&[(PathBuf::from("bench.toml"), text)]).unwrap();
    assert_eq!(policy.routes().len(), 10_000);
    let claims = json!({"sub": "s", "oid": "o", "groups": ["5b1c3d2e-0000-0000-0000-000000000001"], "exp": 1});
    let identity = Identity::from_claims(claims.as_object().cloned().unwrap(), Proof::Session);
    let get = Method::GET;
    c.bench_function("policy/decision_10k_routes", |b| {
        b.iter(|| {
            let route = policy.route(black_box("tool777.example.com"), black_box("/section7/area/page"), &get).unwrap();
            decide(route, black_box(&identity))
        })
    });
    c.bench_function("policy/no_route_10k_routes", |b| {
        b.iter(|| policy.route(black_box("unknown.example.com"), black_box("/x"), &get).is_none())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
