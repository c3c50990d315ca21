//! The pod-template part of the Function spec that is not Flint's own:
//! scheduling, security, extra containers and pod metadata. The fields are
//! Kubernetes types (k8s-openapi); this module holds what Flint adds to them:
//! the image pull policy as an enum, the schema of label maps, and the CEL
//! rules that keep a Function's pods from clashing with what Flint sets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::names::{CONTAINER_NAME, LABEL_VALUE_PATTERN, RESERVED_POD_KEYS};

/// Most sidecars (and, separately, init containers) a Function may have.
pub const MAX_EXTRA_CONTAINERS: usize = 8;

/// When the kubelet pulls the function's image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum ImagePullPolicy {
    /// Pull on every container start.
    Always,
    /// Pull only when the node does not have the image.
    IfNotPresent,
    /// Never pull; the image must be on the node.
    Never,
}

impl ImagePullPolicy {
    /// The policy as Kubernetes spells it in a container.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// Schema of a map whose values are label values (`podLabels`,
/// `nodeSelector`): the API server checks each value's syntax. Keys cannot be
/// checked by a structural schema; [`crate::validate`] checks them, and the
/// API server does when it creates the revision's Deployment.
pub fn label_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": {
            "type": "string",
            "maxLength": 63,
            "pattern": LABEL_VALUE_PATTERN,
        },
    })
}

/// Schema of an annotation map (`podAnnotations`).
pub fn annotation_map_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "additionalProperties": { "type": "string" },
    })
}

/// CEL rule on a label or annotation map: none of [`RESERVED_POD_KEYS`].
/// A lookup per key, so its cost does not grow with the map.
pub fn reserved_keys_rule() -> String {
    RESERVED_POD_KEYS
        .iter()
        .map(|k| format!("!('{k}' in self)"))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Message of [`reserved_keys_rule`].
pub fn reserved_keys_message() -> String {
    format!(
        "must not set a key Flint sets itself ({})",
        RESERVED_POD_KEYS.join(", ")
    )
}

/// CEL rule on a list of containers: none is named like the function's own.
pub fn not_app_rule() -> String {
    format!("self.all(c, c.name != '{CONTAINER_NAME}')")
}

/// Message of [`not_app_rule`].
pub fn not_app_message() -> String {
    format!("the name {CONTAINER_NAME:?} is the function's own container")
}

/// CEL rule on a probe: exactly one handler.
pub const PROBE_HANDLER_RULE: &str = "(has(self.exec) ? 1 : 0) + (has(self.httpGet) ? 1 : 0) + (has(self.tcpSocket) ? 1 : 0) + (has(self.grpc) ? 1 : 0) == 1";
/// Message of [`PROBE_HANDLER_RULE`].
pub const PROBE_HANDLER_MESSAGE: &str =
    "exactly one of exec, httpGet, tcpSocket or grpc must be set";
/// CEL rule on a liveness or startup probe: success means one success.
pub const PROBE_SUCCESS_RULE: &str = "!has(self.successThreshold) || self.successThreshold == 1";
/// Message of [`PROBE_SUCCESS_RULE`].
pub const PROBE_SUCCESS_MESSAGE: &str =
    "successThreshold must be 1 for a liveness or startup probe";
