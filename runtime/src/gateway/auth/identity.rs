//! Who a request was let through as ([`Identity`]), and the headers that
//! tell the function: `X-Flint-Subject` and `X-Flint-Claim-<name>`, which
//! only the gateway may set ([`strip_identity_headers`]).

use http::{HeaderMap, HeaderName, HeaderValue};

/// The header carrying the token's `sub`.
pub const SUBJECT_HEADER: HeaderName = HeaderName::from_static("x-flint-subject");

/// The prefix of the headers carrying forwarded claims (lower case, as
/// [`HeaderName`]s are).
pub const CLAIM_HEADER_PREFIX: &str = "x-flint-claim-";

/// How a request proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// One of the Function's API keys.
    ApiKey,
    /// A JWT from the Function's issuer.
    Jwt,
}

impl AuthMethod {
    /// A short, fixed label for metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "api_key",
            Self::Jwt => "jwt",
        }
    }
}

/// A request's proven identity: what the gateway tells the function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    method: AuthMethod,
    /// `sub`, when the token had a usable one.
    subject: Option<HeaderValue>,
    /// Forwarded claims, each as its header.
    claims: Vec<(HeaderName, HeaderValue)>,
    /// The header that carried an API key, removed before forwarding.
    carrier: Option<HeaderName>,
}

impl Identity {
    /// An identity proven by an API key carried in `carrier`.
    pub(super) fn api_key(carrier: HeaderName) -> Self {
        Self {
            method: AuthMethod::ApiKey,
            subject: None,
            claims: Vec::new(),
            carrier: Some(carrier),
        }
    }

    /// An identity proven by a JWT.
    pub(super) fn jwt(
        subject: Option<HeaderValue>,
        claims: Vec<(HeaderName, HeaderValue)>,
    ) -> Self {
        Self {
            method: AuthMethod::Jwt,
            subject,
            claims,
            carrier: None,
        }
    }

    /// How the request proved it.
    pub fn method(&self) -> AuthMethod {
        self.method
    }

    /// The token's `sub`, if it had one that fits a header.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_ref().and_then(|v| v.to_str().ok())
    }

    /// The forwarded claims, as the headers [`Identity::apply`] writes.
    pub fn claims(&self) -> &[(HeaderName, HeaderValue)] {
        &self.claims
    }

    /// Writes `X-Flint-Subject` and `X-Flint-Claim-<name>` into the
    /// request's headers (after dropping any the client sent), and removes
    /// the header that carried an API key: the function never sees keys.
    /// A JWT stays, so the function may read claims the gateway does not
    /// forward.
    pub fn apply(self, headers: &mut HeaderMap) {
        strip_identity_headers(headers);
        if let Some(carrier) = &self.carrier {
            headers.remove(carrier);
        }
        if let Some(subject) = self.subject {
            headers.insert(SUBJECT_HEADER, subject);
        }
        for (name, value) in self.claims {
            headers.insert(name, value);
        }
    }
}

/// Whether `name` is a header only the gateway may set.
fn is_identity_header(name: &HeaderName) -> bool {
    *name == SUBJECT_HEADER || name.as_str().starts_with(CLAIM_HEADER_PREFIX)
}

/// Drops client-sent `X-Flint-Subject` and `X-Flint-Claim-*` headers, which
/// would otherwise let a client claim any identity to the function. Called
/// on every request to a Function with auth, whether it passes or not.
/// Allocates only when the client did send a claim header.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    headers.remove(SUBJECT_HEADER);
    if !headers.keys().any(is_identity_header) {
        return;
    }
    let spoofed: Vec<HeaderName> = headers
        .keys()
        .filter(|name| is_identity_header(name))
        .cloned()
        .collect();
    for name in spoofed {
        headers.remove(name);
    }
}
