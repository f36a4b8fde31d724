//! Postern: an identity-aware reverse proxy.
//!
//! Every request either carries proof of who sent it (a session cookie from an OpenID Connect sign-in,
//! or a bearer token from a trusted issuer) and is allowed by a policy, or it goes no further.
//!
//! The path of a request, top to bottom, is [`gateway::handle`]; each step calls into the module that owns it.

pub mod admin;
pub mod app;
pub mod assertion;
pub mod authn;
pub mod body;
pub mod clock;
pub mod config;
pub mod demo;
pub mod diag;
pub mod directory;
pub mod duration;
pub mod gateway;
pub mod graph;
pub mod http_client;
pub mod identity;
pub mod identity_headers;
pub mod jwks;
pub mod jwt;
pub mod metrics;
pub mod oidc;
pub mod pages;
pub mod policy;
pub mod reload;
pub mod scim;
pub mod secret;
pub mod server;
pub mod session;
pub mod size;
pub mod state;
pub mod store;
pub mod token;
pub mod upstream;
