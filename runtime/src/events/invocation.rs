//! One asynchronous invocation: the request as accepted, addressed to a
//! Function, and its encoding on the queue (a length-prefixed JSON head
//! followed by the raw body, so bodies are stored byte for byte).

use bytes::{Buf, Bytes};
use serde::{Deserialize, Serialize};

/// Request header carrying the invocation id to the function (and, from a
/// client, the id it wants: a retried submission with the same id is
/// accepted once).
pub const INVOCATION_ID_HEADER: &str = "x-flint-invocation-id";
/// Request header telling the function which delivery attempt this is (1-based).
pub const ATTEMPT_HEADER: &str = "x-flint-attempt";
/// Request header naming the URL the result is POSTed to.
pub const CALLBACK_HEADER: &str = "x-callback-url";
/// Longest invocation id a client may choose.
pub const MAX_ID_LEN: usize = 128;

pub use flint_api::backend::FunctionKey;

/// The key of invocation `id` of `function`, `<ns>/<fn>/<id>`: what
/// duplicate detection and settled markers are keyed by, so the same id
/// sent to two Functions makes two invocations. Unambiguous, since neither
/// names nor ids ([`valid_id`]) hold a `/`.
pub fn invocation_key(function: &FunctionKey, id: &str) -> String {
    format!("{}/{}/{id}", function.namespace, function.function)
}

/// An accepted request, waiting to be delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invocation {
    /// Unique id, answered to the client and sent to the function.
    pub id: String,
    /// The Function it is for.
    pub target: FunctionKey,
    /// HTTP method.
    pub method: String,
    /// Path and query as the gateway routes them (`/function/<ns>/<fn>/…`
    /// or, with `host` set, the path the client sent to the Function's host).
    pub uri: String,
    /// Host header to deliver with (host-routed requests, which keeps
    /// traffic tags); `None` for path-routed ones.
    pub host: Option<String>,
    /// Request headers to forward (hop-by-hop and Flint's own removed).
    pub headers: Vec<(String, String)>,
    /// Where to POST the result, if anywhere.
    pub callback_url: Option<String>,
    /// When it was accepted, in milliseconds since the Unix epoch.
    pub enqueued_at_ms: u64,
    /// Request body.
    #[serde(skip)]
    pub body: Bytes,
}

/// Why stored bytes are not an invocation.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than the length prefix announces.
    #[error("record truncated: {len} bytes")]
    Truncated {
        /// Bytes present.
        len: usize,
    },
    /// The head is not the expected JSON.
    #[error("record head is not valid: {0}")]
    Head(#[from] serde_json::Error),
}

impl Invocation {
    /// Its key, `<ns>/<fn>/<id>` (see [`invocation_key`]).
    pub fn key(&self) -> String {
        invocation_key(&self.target, &self.id)
    }

    /// The bytes stored on the queue.
    pub fn encode(&self) -> Result<Vec<u8>, serde_json::Error> {
        let head = serde_json::to_vec(self)?;
        let mut out = Vec::with_capacity(4 + head.len() + self.body.len());
        out.extend_from_slice(&(head.len() as u32).to_be_bytes());
        out.extend_from_slice(&head);
        out.extend_from_slice(&self.body);
        Ok(out)
    }

    /// Reads back what [`Invocation::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let truncated = || DecodeError::Truncated { len: bytes.len() };
        let mut rest = bytes;
        if rest.len() < 4 {
            return Err(truncated());
        }
        let head_len = rest.get_u32() as usize;
        let head = rest.get(..head_len).ok_or_else(truncated)?;
        let mut inv: Invocation = serde_json::from_slice(head)?;
        inv.body = Bytes::copy_from_slice(&rest[head_len..]);
        Ok(inv)
    }
}

/// A fresh invocation id: time-ordered, unique within a process and across
/// processes with overwhelming probability (48 bits of time, 80 random).
pub fn new_id(now_ms: u64) -> String {
    let random: u128 = rand::random();
    format!(
        "{:012x}{:020x}",
        now_ms & 0xffff_ffff_ffff,
        random & ((1u128 << 80) - 1)
    )
}

/// Whether a client-chosen id is usable (printable ASCII, no spaces, not
/// too long), since it becomes a storage key and a message id.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(body: &'static [u8]) -> Invocation {
        Invocation {
            id: "abc".into(),
            target: FunctionKey::new("default", "hello"),
            method: "POST".into(),
            uri: "/function/default/hello/x?y=1".into(),
            host: None,
            headers: vec![("content-type".into(), "application/json".into())],
            callback_url: Some("http://127.0.0.1:9/cb".into()),
            enqueued_at_ms: 1_700_000_000_000,
            body: Bytes::from_static(body),
        }
    }

    #[test]
    fn encoding_round_trips_bodies_byte_for_byte() {
        for body in [&b""[..], b"{\"a\":1}", &[0u8, 255, 10, 13]] {
            let inv = sample(body);
            let bytes = inv.encode().unwrap();
            assert_eq!(Invocation::decode(&bytes).unwrap(), inv);
        }
    }

    #[test]
    fn truncated_records_are_refused() {
        let bytes = sample(b"x").encode().unwrap();
        assert!(matches!(
            Invocation::decode(&bytes[..2]),
            Err(DecodeError::Truncated { len: 2 })
        ));
        assert!(matches!(
            Invocation::decode(&bytes[..10]),
            Err(DecodeError::Truncated { len: 10 })
        ));
    }

    #[test]
    fn keys_name_the_function() {
        let a = invocation_key(&FunctionKey::new("team", "a"), "job-1");
        let b = invocation_key(&FunctionKey::new("team", "b"), "job-1");
        assert_eq!(a, "team/a/job-1");
        assert_ne!(a, b);
        assert_eq!(sample(b"").key(), "default/hello/abc");
    }

    #[test]
    fn ids() {
        let a = new_id(5);
        assert_eq!(a.len(), 32);
        assert!(a.starts_with("000000000005"));
        assert_ne!(new_id(5), new_id(5));
        assert!(valid_id(&a));
        assert!(valid_id("cron.default.tick.0.1700000000"));
        for bad in ["", "a b", "a/b\n", &"x".repeat(129)] {
            assert!(!valid_id(bad), "{bad:?}");
        }
    }
}
