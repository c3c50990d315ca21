//! TLS termination at the gateway: the certificates it serves, chosen per
//! connection by SNI, and the rustls settings of its TLS listener.
//!
//! A [`CertStore`] holds the current [`CertSet`] (exact hosts, one-label
//! wildcards, a default certificate) and answers rustls' question "which
//! certificate for this handshake?" without a lock; whoever watches the
//! certificates (the Secret watcher on a cluster, `flint dev` with a
//! [`self_signed`] one) swaps a whole new set in with [`CertStore::set`],
//! which only new handshakes see. [`certified_key`] reads a certificate
//! chain and its key as a `kubernetes.io/tls` Secret holds them;
//! [`covers`] and [`names`] tell which hosts a certificate is good for;
//! [`server_config`] is what the TLS listener serves with (ALPN `h2` and
//! `http/1.1`, TLS 1.2 and 1.3, the ring provider).

mod config;
mod error;
mod names;
mod pem;
mod self_signed;
mod store;

#[cfg(test)]
pub(crate) mod testing;

pub use config::server_config;
pub use error::TlsError;
pub use names::{covers, names};
pub use pem::certified_key;
pub use rustls::sign::CertifiedKey;
pub use self_signed::self_signed;
pub use store::{CertSet, CertStore};
