//! Postern's integration tests: one test binary (so the 2-core machine links once), one module per area.
//! Every test starts real servers on 127.0.0.1 with ephemeral ports — Postern, the development OpenID
//! provider signing real RS256 tokens, the echo upstream — and drives them with a real HTTP client holding a
//! cookie jar. Tests assert what a user or an upstream observes: statuses, headers, cookies, bodies.

// clippy.toml allows these inside #[test] functions only; in a test binary's helpers a failed expectation is a
// failed test too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod admin;
mod admin_api;
mod bearer;
mod bearer_issuers;
mod big_transfer;
mod callback_attacks;
mod cli;
mod cli_policy;
mod client_credentials;
mod entra;
mod faults;
mod forward_auth;
mod frontchannel;
mod handoff;
mod limits;
mod login_flow;
mod logs;
mod open_redirect;
mod policy_bypass;
mod policy_reload;
mod proxy;
mod redis;
mod scim;
mod sessions;
mod sign_out;
mod store;
mod upstream_reuse;
