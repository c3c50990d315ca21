//! The two sides of a mocked API server connection (kube-rs `tower-test`
//! pattern), run together with bounds on both.

use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use http::{Request, Response};
use kube::client::Body;

/// The server side of the mocked connection.
pub type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// Runs `client` while `server` answers the requests arriving on `handle`
/// and hands it back: both must finish within 10 s, and no request may
/// follow the server's last answer. Returns what `client` returned.
pub async fn serve_while<T, S>(
    handle: Handle,
    server: impl FnOnce(Handle) -> S,
    client: impl Future<Output = T>,
) -> T
where
    S: Future<Output = Handle> + Send + 'static,
{
    let server = tokio::spawn(server(handle));
    let result = tokio::time::timeout(Duration::from_secs(10), client)
        .await
        .expect("the client hung: it made a request the scenario does not expect");
    let mut handle = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("scenario incomplete")
        .unwrap();
    // `Some(None)`: the client is gone and sent nothing more (an empty
    // script ends that way).
    if let Some(Some((request, _))) = handle.next_request().now_or_never() {
        panic!(
            "an unexpected extra request: {} {}",
            request.method(),
            request.uri()
        );
    }
    result
}
