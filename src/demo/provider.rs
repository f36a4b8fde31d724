//! The development OpenID provider (being written).
