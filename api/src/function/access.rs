//! Who may reach a Function and how (`spec.visibility`, `spec.auth`,
//! `spec.domains`, `spec.tls`): the gateway enforces all of it in its one
//! hop, before a request wakes a revision, and `flint dev` applies the same
//! fields locally. Apart from the spec because only the gateway (and the
//! status it implies) reads them.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where a Function answers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Visibility {
    /// On the gateway's public listener (and the in-cluster one).
    Public,
    /// Only on the gateway's in-cluster listener, which the public Service
    /// does not expose; the public listener answers 404 as for an unknown
    /// Function.
    ClusterLocal,
}

impl Visibility {
    /// The visibility as spelled in the spec.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::ClusterLocal => "cluster-local",
        }
    }
}

/// A visibility name that is not one of the spec's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown visibility {0:?}: expected \"public\" or \"cluster-local\"")]
pub struct UnknownVisibility(pub String);

impl std::str::FromStr for Visibility {
    type Err = UnknownVisibility;

    /// Parses the spec's spelling (see [`Visibility::as_str`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Public, Self::ClusterLocal]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| UnknownVisibility(s.to_owned()))
    }
}

/// Who may call a Function. With both methods set, a request that passes
/// either one is let through. A refused request (401, or 403 for a valid
/// identity that lacks a required claim) never reaches the function and
/// never wakes it from zero. Synchronous and asynchronous invocations obey
/// it alike; schedules are the platform's own callers and are not checked.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.apiKeys) || has(self.jwt)").message("set apiKeys, jwt or both"))]
pub struct AuthSpec {
    /// Static API keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_keys: Option<ApiKeyAuth>,
    /// JSON Web Tokens from an issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtAuth>,
}

/// Where secret material comes from: a Secret in the Function's namespace
/// on a cluster; a file or an environment variable in `flint dev`. A
/// manifest used in both places may name a Secret and a local source.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretName) || has(self.file) || has(self.env)").message("name a secretName (cluster), a file or an env (flint dev)"))]
#[x_kube(validation = Rule::new("!(has(self.file) && has(self.env))").message("file and env are exclusive"))]
pub struct KeySource {
    /// Secret in the Function's namespace (read by the gateway; a change is picked up without a restart or a new revision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::names::DNS1123_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
    /// Key in the Secret's data; unset, every value of the Secret is used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = "^[-._a-zA-Z0-9]+$"))]
    pub key: Option<String>,
    /// `flint dev`: a file (relative to the manifest's directory), one value per line; re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub file: Option<String>,
    /// `flint dev`: an environment variable, values separated by commas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 256),
        regex(pattern = "^[A-Za-z_][A-Za-z0-9_]*$")
    )]
    pub env: Option<String>,
}

/// API-key authentication: a request carries one of the keys.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyAuth {
    /// The accepted keys: each value (or each line of a file) is one key. Rotate by adding the new key, moving clients to it, then removing the old one; the gateway follows the change without a restart. Keys are held only as SHA-256 digests and compared in constant time.
    pub keys: KeySource,
    /// Header that carries the key. Unset, `Authorization: Bearer <key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = "^[A-Za-z0-9-]+$"))]
    pub header: Option<String>,
}

/// A JWS algorithm the gateway may accept.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum JwtAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA P-256 with SHA-256.
    ES256,
    /// ECDSA P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
    /// HMAC with SHA-256: only with `hmacKey`.
    HS256,
    /// HMAC with SHA-384: only with `hmacKey`.
    HS384,
    /// HMAC with SHA-512: only with `hmacKey`.
    HS512,
}

impl JwtAlgorithm {
    /// Whether the algorithm is an HMAC one, which needs a shared key.
    pub const fn is_hmac(self) -> bool {
        matches!(self, Self::HS256 | Self::HS384 | Self::HS512)
    }
}

/// JWT authentication: a request carries `Authorization: Bearer <token>`
/// signed by the issuer, for one of the audiences, within its validity.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.jwksUrl) || has(self.jwksFile) || has(self.hmacKey)").message("set jwksUrl, jwksFile (flint dev) or hmacKey"))]
#[x_kube(validation = Rule::new("!has(self.algorithms) || has(self.hmacKey) || self.algorithms.all(a, !a.startsWith('HS'))").message("HS256, HS384 and HS512 need hmacKey"))]
#[x_kube(validation = Rule::new("!has(self.hmacKey) || (has(self.algorithms) && self.algorithms.exists(a, a.startsWith('HS')))").message("hmacKey needs an HS algorithm in algorithms"))]
pub struct JwtAuth {
    /// Required `iss` claim.
    #[schemars(length(min = 1, max = 1024))]
    pub issuer: String,
    /// Accepted `aud` values; a token must name at least one.
    #[schemars(length(min = 1, max = 16))]
    pub audiences: Vec<String>,
    /// The issuer's JSON Web Key Set, fetched by the gateway over HTTPS, cached as its Cache-Control allows (between 1 minute and 24 hours) and fetched again when a token names an unknown `kid` (at most once per 10 seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = "^https?://"))]
    pub jwks_url: Option<String>,
    /// `flint dev`: the key set from a local file (relative to the manifest's directory), re-read when it changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub jwks_file: Option<String>,
    /// Accepted algorithms; a token signed with any other is refused (`none` never is). Default RS256 and ES256.
    #[serde(default = "default_algorithms")]
    #[schemars(length(min = 1, max = 12))]
    pub algorithms: Vec<JwtAlgorithm>,
    /// Shared key for HS256/384/512.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hmac_key: Option<KeySource>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    #[serde(default = "default_clock_skew")]
    #[schemars(range(max = 600))]
    pub clock_skew_seconds: u32,
    /// Claims a token must carry: a claim passes when it equals one of the values, or (an array, or a space-separated string such as `scope`) contains one. A valid token without them is refused with 403.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub required_claims: Vec<RequiredClaim>,
    /// Claims passed to the function as `X-Flint-Claim-<name>` headers (besides `sub` as `X-Flint-Subject`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub forward_claims: Vec<ClaimName>,
}

/// One claim a token must carry.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequiredClaim {
    /// Claim name.
    #[schemars(length(min = 1, max = 128))]
    pub name: String,
    /// Accepted values.
    #[schemars(length(min = 1, max = 32))]
    pub values: Vec<String>,
}

/// A claim name forwarded as a header: letters, digits, '_' and '-'.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(transparent)]
pub struct ClaimName(
    #[schemars(length(min = 1, max = 64), regex(pattern = "^[A-Za-z0-9_-]+$"))] pub String,
);

fn default_algorithms() -> Vec<JwtAlgorithm> {
    vec![JwtAlgorithm::RS256, JwtAlgorithm::ES256]
}

const fn default_clock_skew() -> u32 {
    60
}

/// TLS for a Function's hosts at the gateway.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// Secret of type kubernetes.io/tls in the Function's namespace whose certificate serves the Function's hosts (its own host and `domains`) on the gateway's TLS listener, chosen by SNI; a cert-manager Certificate can write it. Unset, the gateway's default certificate serves them (on a cluster, the chart's `gateway.tls.defaultSecret`; in `flint dev`, a self-signed one for *.localhost). A change to the Secret is picked up without dropping connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::names::DNS1123_SUBDOMAIN_PATTERN))]
    pub secret_name: Option<String>,
    /// Answer plain-HTTP requests for the Function's hosts with 308 to https.
    #[serde(default)]
    pub redirect: bool,
}
