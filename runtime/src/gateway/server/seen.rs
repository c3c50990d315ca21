//! For the crate's tests only: what each request's connection told the
//! request path (its listener, whether over TLS), recorded by the value of
//! its `x-test-seen` header, so a test can prove the plumbing without the
//! request path's help.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use flint_api::sync::lock;

use super::client::Client;
use super::listeners::ListenerKind;

/// The header whose value names a request for [`seen`].
pub(crate) const HEADER: &str = "x-test-seen";

fn log() -> &'static Mutex<HashMap<String, (ListenerKind, bool)>> {
    static LOG: OnceLock<Mutex<HashMap<String, (ListenerKind, bool)>>> = OnceLock::new();
    LOG.get_or_init(Mutex::default)
}

/// Records what `client` says of a request that names itself.
pub(crate) fn request<B>(client: &Client, req: &http::Request<B>) {
    if let Some(name) = req.headers().get(HEADER).and_then(|v| v.to_str().ok()) {
        lock(log()).insert(name.to_owned(), (client.listener, client.tls));
    }
}

/// What the request named `name` saw: its listener and whether over TLS.
pub(crate) fn seen(name: &str) -> Option<(ListenerKind, bool)> {
    lock(log()).get(name).copied()
}
