//! `postern demo`: a development OpenID provider, an echo upstream and Postern, all on 127.0.0.1.
//! Never binds anything but a loopback address.

pub mod echo;
pub mod provider;
pub mod serve;
