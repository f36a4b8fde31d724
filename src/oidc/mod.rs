//! OpenID Connect sign-in: the provider (discovery, keys, token endpoint), the login flow's HTTP handlers and
//! redirect-target checks. The flow's states and exits are described in `LIFECYCLE.md` beside this file.
//!
//! Why not the `openidconnect` crate: it captures the key set when a client is built (so rotation would be
//! ours anyway), cannot try every key for a token without `kid`, does not check `nbf`, and cannot verify Entra's
//! `{tenantid}` issuer template. The flow itself is a few form posts; the cryptography is jsonwebtoken's and
//! aws-lc-rs's.

pub mod entra;
pub mod login;
pub mod provider;
pub mod redirect;

pub use provider::{OidcError, Provider};
