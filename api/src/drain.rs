//! Draining replicas before a scale-down: the autoscaler asks every gateway
//! to take the replicas it is about to remove out of rotation and answers
//! once none of them has a request in flight, so the replicas go without
//! cutting a request short however long it runs. Only the holder of the
//! control token (the operator) may ask.
//!
//! The same token guards every control request between the operator and the
//! gateways, both ways: the gateways' drains and releases, and the
//! operator's scale-from-zero poke ([`crate::poke`]). [`authorize`] is the
//! one check both sides run.

use serde::{Deserialize, Serialize};

/// HTTP path (POST, JSON body [`DrainRequest`], answer [`DrainReply`]) on the
/// gateway's admin port: hold the pods out of rotation and wait until they
/// have nothing in flight (or `timeoutSeconds` pass).
pub const DRAIN_PATH: &str = "/v1/drain";
/// HTTP path (POST, JSON body [`DrainRequest`]) on the gateway's admin port:
/// put held pods back into rotation (the scale-down was called off).
pub const RELEASE_PATH: &str = "/v1/release";
/// Environment variable holding the control token that the operator sends
/// (`Authorization: Bearer …`) and the gateway checks. Without one, the
/// gateway refuses drains.
pub const CONTROL_TOKEN_ENV: &str = "FLINT_CONTROL_TOKEN";
/// Seconds a hold outlives its drain's timeout before it lapses by itself,
/// so a scale-down the operator never finished does not keep a replica out
/// of rotation for good.
pub const HOLD_GRACE_SECONDS: u32 = 30;

/// The shared secret of the operator and the gateways. Its `Debug` never
/// shows the value, and comparing a presented value takes the same time
/// wherever the two differ.
#[derive(Clone, PartialEq, Eq)]
pub struct ControlToken(String);

impl ControlToken {
    /// The token `value`; `None` when it is empty (no token configured).
    pub fn new(value: impl Into<String>) -> Option<Self> {
        let value = value.into();
        let value = value.trim().to_owned();
        (!value.is_empty()).then_some(Self(value))
    }

    /// The value, to send in `Authorization: Bearer …`.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether an `Authorization` header value is `Bearer <this token>`.
    pub fn authorizes(&self, authorization: &str) -> bool {
        bearer(authorization).is_some_and(|presented| self.matches(presented))
    }

    /// A fresh random token (32 bytes, hex): the gateway's own, for callers
    /// in its process (the delivery worker, `flint dev`'s scheduler).
    pub fn random() -> Self {
        let bytes: [u8; 32] = rand::random();
        Self(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Whether `presented` is this token, comparing every byte whatever
    /// the first difference (no timing hint about how much of it matched).
    pub fn matches(&self, presented: &str) -> bool {
        let (a, b) = (presented.as_bytes(), self.0.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

/// The token of a `Bearer <token>` header value; `None` for another scheme
/// or an empty token.
fn bearer(authorization: &str) -> Option<&str> {
    let token = authorization.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then_some(token)
}

/// Why a control request is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The receiver has no control token, so it can authenticate nobody and
    /// refuses every control request.
    #[error("no control token is configured ({CONTROL_TOKEN_ENV}): control requests are refused")]
    NotConfigured,
    /// The request carries no `Authorization: Bearer …` credential.
    #[error("missing credential: send the control token as Authorization: Bearer <token>")]
    MissingCredential,
    /// The request's bearer token is not the control token.
    #[error("wrong credential: the bearer token is not the control token")]
    WrongCredential,
}

impl Refusal {
    /// The HTTP status of the refusal: 403 when nobody can be authorized,
    /// 401 when this request lacks the credential.
    pub fn status(self) -> u16 {
        match self {
            Self::NotConfigured => 403,
            Self::MissingCredential | Self::WrongCredential => 401,
        }
    }

    /// A short label for logs and metrics.
    pub fn label(self) -> &'static str {
        match self {
            Self::NotConfigured => "not_configured",
            Self::MissingCredential => "missing_credential",
            Self::WrongCredential => "wrong_credential",
        }
    }
}

/// The `WWW-Authenticate` value sent with a 401 refusal.
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"flint-control\"";

/// Checks a control request's `Authorization` header (`None` when absent)
/// against the receiver's token (`None` when it has none configured).
pub fn authorize(
    configured: Option<&ControlToken>,
    authorization: Option<&str>,
) -> Result<(), Refusal> {
    let token = configured.ok_or(Refusal::NotConfigured)?;
    let presented = authorization
        .and_then(bearer)
        .ok_or(Refusal::MissingCredential)?;
    if token.matches(presented) {
        Ok(())
    } else {
        Err(Refusal::WrongCredential)
    }
}

impl std::fmt::Debug for ControlToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ControlToken(<redacted>)")
    }
}

/// Pods of one revision to drain (or release).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainRequest {
    /// Namespace of the Function.
    pub namespace: String,
    /// Name of the Function.
    pub function: String,
    /// The revision the pods belong to.
    pub revision: String,
    /// Names of the pods (the EndpointSlice's target references).
    pub pods: Vec<String>,
    /// Longest wait for their requests to finish: the revision's request
    /// timeout (no request may run longer).
    pub timeout_seconds: u32,
}

/// What a gateway still has in flight to the pods when it answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainReply {
    /// Requests still running on the pods (0: drained).
    pub in_flight: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_authorizes_only_its_own_bearer_value_and_never_prints() {
        let token = ControlToken::new("s3cret-value").unwrap();
        assert!(token.authorizes("Bearer s3cret-value"));
        assert!(!token.authorizes("Bearer s3cret-valuE"));
        assert!(!token.authorizes("Bearer s3cret"));
        assert!(!token.authorizes("s3cret-value"));
        assert!(!token.authorizes("Basic s3cret-value"));
        assert!(!format!("{token:?}").contains("s3cret"));
        assert_eq!(ControlToken::new("  "), None);
    }

    #[test]
    fn authorize_names_what_is_wrong() {
        let token = ControlToken::new("s3cret").unwrap();
        assert_eq!(authorize(Some(&token), Some("Bearer s3cret")), Ok(()));
        assert_eq!(
            authorize(Some(&token), None),
            Err(Refusal::MissingCredential)
        );
        assert_eq!(
            authorize(Some(&token), Some("Basic s3cret")),
            Err(Refusal::MissingCredential)
        );
        assert_eq!(
            authorize(Some(&token), Some("Bearer ")),
            Err(Refusal::MissingCredential)
        );
        assert_eq!(
            authorize(Some(&token), Some("Bearer s3creT")),
            Err(Refusal::WrongCredential)
        );
        assert_eq!(
            authorize(None, Some("Bearer s3cret")),
            Err(Refusal::NotConfigured)
        );
        assert_eq!(Refusal::MissingCredential.status(), 401);
        assert_eq!(Refusal::WrongCredential.status(), 401);
        assert_eq!(Refusal::NotConfigured.status(), 403);
        assert!(
            Refusal::MissingCredential
                .to_string()
                .contains("missing credential")
        );
        assert!(
            Refusal::WrongCredential
                .to_string()
                .contains("wrong credential")
        );
        assert!(
            Refusal::NotConfigured
                .to_string()
                .contains(CONTROL_TOKEN_ENV)
        );
    }

    #[test]
    fn wire_format_is_camel_case_json() {
        let req = DrainRequest {
            namespace: "default".into(),
            function: "hello".into(),
            revision: "hello-00001".into(),
            pods: vec!["hello-00001-abc".into()],
            timeout_seconds: 30,
        };
        let text = serde_json::to_string(&req).unwrap();
        assert_eq!(
            text,
            r#"{"namespace":"default","function":"hello","revision":"hello-00001","pods":["hello-00001-abc"],"timeoutSeconds":30}"#
        );
        assert_eq!(serde_json::from_str::<DrainRequest>(&text).unwrap(), req);
        assert_eq!(
            serde_json::to_string(&DrainReply { in_flight: 2 }).unwrap(),
            r#"{"inFlight":2}"#
        );
    }
}
