//! Postern: an identity-aware reverse proxy.
//!
//! Every request either carries proof of who sent it (a session cookie from an OpenID Connect sign-in,
//! or a bearer token from a trusted issuer) and is allowed by a policy, or it goes no further.
//!
//! The path of a request, top to bottom, is [`gateway::handle`]; each step calls into the module that owns it.

pub mod body;
pub mod demo;
pub mod clock;
pub mod config;
pub mod diag;
pub mod duration;
pub mod identity;
pub mod policy;
pub mod secret;
pub mod http_client;
pub mod jwks;
pub mod jwt;
pub mod session;
pub mod assertion;
pub mod pages;
pub mod upstream;
pub mod authn;
pub mod gateway;
pub mod oidc;
pub mod state;
pub mod token;
