//! A Function's gate: what a request must pass, after it is routed and
//! before it may reach (or wake) a revision: the listener it came on
//! (`spec.visibility`), the scheme (`spec.tls.redirect`) and its
//! credentials (`spec.auth`). Built with the routing table, from the spec
//! and the secret material the [`Keyring`] holds, so the request path only
//! reads it.

use std::sync::Arc;

use flint_api::backend::{FunctionKey, FunctionRoute};
use flint_api::function::{AuthSpec, Visibility};
use http::Request;

use super::AccessSettings;
use super::auth::{self, Credentials, FunctionAuth, JwksRegistry};
use super::error::ProxyError;
use super::host::NamedHost;
use super::keyring::Keyring;
use super::server::ListenerKind;

/// What a request to one Function must pass.
#[derive(Debug)]
pub struct Gate {
    /// Where the Function answers.
    pub visibility: Visibility,
    /// Plain-HTTP requests are sent to https.
    pub redirect_https: bool,
    /// The credential check.
    pub guard: Guard,
}

/// A Function's credential check.
#[derive(Debug)]
pub enum Guard {
    /// Anyone who reaches the Function's hosts.
    Open,
    /// The Function's rule, shared with the next table's gate while the
    /// Function's spec and secret material stay the same.
    Auth(Arc<FunctionAuth>),
    /// The Function has auth but its keys cannot be read: every request is
    /// refused (503) with this reason, never let through.
    Unavailable(Arc<str>),
}

impl Default for Gate {
    /// Public, plain HTTP allowed, no credentials.
    fn default() -> Self {
        Self {
            visibility: Visibility::Public,
            redirect_https: false,
            guard: Guard::Open,
        }
    }
}

impl Gate {
    /// The gate of `route` under `settings`, with the secret material of
    /// `keyring`. The rule of `previous` (the Function's gate in the table
    /// being replaced) is kept when it was built from the same spec and
    /// material, with the tokens it verified.
    pub fn build(
        route: &FunctionRoute,
        settings: &AccessSettings,
        keyring: &dyn Keyring,
        registry: &JwksRegistry,
        previous: Option<&Gate>,
    ) -> Self {
        let access = &route.access;
        let function = FunctionKey::new(&route.namespace, &route.name);
        let previous = match previous.map(|gate| &gate.guard) {
            Some(Guard::Auth(auth)) => Some(auth),
            _ => None,
        };
        let guard = match &access.auth {
            None => Guard::Open,
            Some(spec) => match guard(&function, spec, keyring, registry, previous) {
                Ok(auth) => Guard::Auth(auth),
                Err(why) => {
                    tracing::warn!(%function, %why, "auth cannot be checked; every request is refused");
                    Guard::Unavailable(why.into())
                }
            },
        };
        Self {
            visibility: access.visibility.unwrap_or(settings.default_visibility),
            redirect_https: access.tls.as_ref().is_some_and(|t| t.redirect),
            guard,
        }
    }

    /// Whether `other` lets the same requests through: same visibility
    /// and redirect, and the same rule (the same `Arc`, as
    /// [`Gate::build`] keeps it while spec and material stay the same).
    pub fn same_rule(&self, other: &Gate) -> bool {
        let guard = match (&self.guard, &other.guard) {
            (Guard::Open, Guard::Open) => true,
            (Guard::Auth(a), Guard::Auth(b)) => Arc::ptr_eq(a, b),
            (Guard::Unavailable(a), Guard::Unavailable(b)) => a == b,
            _ => false,
        };
        guard && self.visibility == other.visibility && self.redirect_https == other.redirect_https
    }

    /// Whether the Function answers on a listener of `kind` at all (a
    /// cluster-local one is unknown on the public listener).
    pub fn visible_on(&self, kind: ListenerKind) -> bool {
        self.visibility == Visibility::Public || kind == ListenerKind::Internal
    }

    /// Whether nothing is checked beyond visibility: the request path then
    /// skips [`Gate::admit`].
    pub fn is_open(&self) -> bool {
        !self.redirect_https && matches!(self.guard, Guard::Open)
    }

    /// Lets `req` through to the Function `namespace/name`, with its
    /// identity written into its headers (and client-sent identity headers
    /// dropped), or refuses it. `tls` says whether it came over TLS. The
    /// names are borrowed: only a refusal copies them.
    pub async fn admit<B>(
        &self,
        (namespace, name): (&str, &str),
        req: &mut Request<B>,
        tls: bool,
        https_port: u16,
    ) -> Result<(), ProxyError> {
        if self.redirect_https && !tls {
            return Err(ProxyError::HttpsRequired {
                location: https_location(req, https_port),
            });
        }
        match &self.guard {
            Guard::Open => Ok(()),
            Guard::Unavailable(why) => Err(ProxyError::AuthUnavailable {
                namespace: namespace.to_owned(),
                function: name.to_owned(),
                why: Arc::clone(why),
            }),
            Guard::Auth(auth) => {
                auth::strip_identity_headers(req.headers_mut());
                match auth.authorize(req.headers()).await {
                    Ok(identity) => {
                        identity.apply(req.headers_mut());
                        Ok(())
                    }
                    Err(failure) => Err(ProxyError::Unauthorized {
                        namespace: namespace.to_owned(),
                        function: name.to_owned(),
                        failure,
                    }),
                }
            }
        }
    }
}

/// The Function's rule, with its secret material read from `keyring`
/// (`previous` when built from the same), or why it cannot be had.
fn guard(
    function: &FunctionKey,
    spec: &AuthSpec,
    keyring: &dyn Keyring,
    registry: &JwksRegistry,
    previous: Option<&Arc<FunctionAuth>>,
) -> Result<Arc<FunctionAuth>, String> {
    let mut credentials = Credentials {
        api_keys: Vec::new(),
        hmac_key: None,
        jwks_document: None,
    };
    if let Some(keys) = &spec.api_keys {
        credentials.api_keys = keyring
            .values(function, &keys.keys)
            .map_err(|e| format!("spec.auth.apiKeys: {e}"))?;
    }
    if let Some(jwt) = &spec.jwt {
        if let Some(source) = &jwt.hmac_key {
            let values = keyring
                .values(function, source)
                .map_err(|e| format!("spec.auth.jwt.hmacKey: {e}"))?;
            credentials.hmac_key = values.into_iter().next();
        }
        if let Some(path) = &jwt.jwks_file {
            match keyring.file(function, path) {
                Ok(document) => credentials.jwks_document = Some(document),
                // A manifest for both places: the cluster fetches the URL.
                Err(_) if jwt.jwks_url.is_some() => {}
                Err(e) => return Err(format!("spec.auth.jwt.jwksFile: {e}")),
            }
        }
    }
    if let Some(previous) = previous.filter(|p| p.is_built_from(spec, &credentials)) {
        return Ok(Arc::clone(previous));
    }
    FunctionAuth::new(spec, credentials, registry)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

/// The request's URL over https on `port`.
fn https_location<B>(req: &Request<B>, port: u16) -> String {
    let host = super::host::strip_port(NamedHost::first(req).as_str());
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str());
    if port == 443 {
        format!("https://{host}{target}")
    } else {
        format!("https://{host}:{port}{target}")
    }
}

#[cfg(test)]
mod tests;
