//! The authentication rules, one table per method, each case asserting the
//! exact status and reason; key-set fetching against a server on
//! 127.0.0.1 that counts its hits.

mod api_keys;
mod combined;
mod config;
mod fixtures;
mod https;
mod jwks;
mod jwt;
mod measure;
mod token_cache;
mod tokens;
