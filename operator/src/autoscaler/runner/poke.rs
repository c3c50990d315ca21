//! The poke endpoint over HTTP, for gateways running in other processes:
//! a poke needs the control token, and one without it is refused before its
//! body is read and changes nothing. Apart from the loop because it is
//! transport and authorization; the poke then takes the same path as one
//! from a gateway in the same process ([`AutoscalerHandle`]).

use std::sync::Arc;

use flint_api::backend::PokeSink;
use flint_api::drain::{ControlToken, WWW_AUTHENTICATE, authorize};
use flint_api::poke::ScalePoke;

use super::AutoscalerHandle;

/// An axum router with `POST` [`flint_api::poke::POKE_PATH`] taking a JSON
/// [`ScalePoke`], for gateways running in other processes. Only a request
/// carrying `token` (`Authorization: Bearer …`) reaches the loop; any other
/// is refused (401, or 403 with no token configured) and changes nothing.
pub fn poke_router(handle: AutoscalerHandle, token: Option<ControlToken>) -> axum::Router {
    use axum::routing::post;
    axum::Router::new()
        .route(
            flint_api::poke::POKE_PATH,
            post(
                |axum::extract::State(h): axum::extract::State<AutoscalerHandle>,
                 axum::Json(poke): axum::Json<ScalePoke>| async move {
                    h.poke(poke);
                    http::StatusCode::ACCEPTED
                },
            )
            .with_state(handle),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(token),
            control_only,
        ))
}

/// Lets a poke through only with the control token; refuses it before its
/// body is read otherwise, naming what is wrong.
async fn control_only(
    axum::extract::State(token): axum::extract::State<Arc<Option<ControlToken>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let authorization = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let Err(refusal) = authorize(token.as_ref().as_ref(), authorization) else {
        return next.run(request).await;
    };
    tracing::warn!(refusal = refusal.label(), "poke refused");
    let status =
        http::StatusCode::from_u16(refusal.status()).unwrap_or(http::StatusCode::UNAUTHORIZED);
    let mut response = (
        status,
        [(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{refusal}\n"),
    )
        .into_response();
    if status == http::StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static(WWW_AUTHENTICATE),
        );
    }
    response
}
