//! The scale-from-zero poke: the gateway tells the autoscaler at once that a
//! request is waiting for a revision with no ready replica, so the autoscaler
//! decides now instead of at its next tick.
//!
//! The poke is a control request: the gateway presents the control token
//! ([`crate::drain::ControlToken`], `Authorization: Bearer …`), and the
//! autoscaler refuses a poke without it. Its `waiting` count is also capped
//! at the gateway's queue size, the most requests a gateway can hold for a
//! revision, so even a poke with the token cannot claim more demand than
//! could exist.

use serde::{Deserialize, Serialize};

/// HTTP path (POST, JSON body [`ScalePoke`]) of the autoscaler's poke endpoint.
pub const POKE_PATH: &str = "/v1/poke";

/// The gateway's default per-revision queue size: requests that may wait for
/// a revision with no free replica. The autoscaler caps a poke's `waiting`
/// at the same bound (both sides take it from one setting, the chart's
/// `gateway.queueSize`).
pub const DEFAULT_QUEUE_SIZE: u32 = 1000;

/// A request is waiting for `revision` of `namespace/function`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScalePoke {
    /// Namespace of the Function.
    pub namespace: String,
    /// Name of the Function.
    pub function: String,
    /// Revision that has requests waiting.
    pub revision: String,
    /// Requests currently waiting for it (a hint for the first decision;
    /// the autoscaler counts at most the gateway's queue size).
    pub waiting: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_format_is_camel_case_json() {
        let poke = ScalePoke {
            namespace: "default".into(),
            function: "hello".into(),
            revision: "hello-00001".into(),
            waiting: 3,
        };
        let text = serde_json::to_string(&poke).unwrap();
        assert_eq!(
            text,
            r#"{"namespace":"default","function":"hello","revision":"hello-00001","waiting":3}"#
        );
        assert_eq!(serde_json::from_str::<ScalePoke>(&text).unwrap(), poke);
    }
}
