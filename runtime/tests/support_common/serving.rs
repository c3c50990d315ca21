//! A gateway served in-process on a free port of 127.0.0.1 until stopped:
//! the server half of the gateway and async-invocation test harnesses.

use std::net::SocketAddr;
use std::time::Duration;

use flint_runtime::gateway::Gateway;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A running server; dropping it without [`Serving::stop`] also stops
/// accepting, without waiting.
pub struct Serving {
    /// Where the gateway listens.
    pub addr: SocketAddr,
    stop: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

/// Serves `gateway` on a free port of 127.0.0.1 with the gateway's own
/// listener settings.
pub fn serve(gateway: &Gateway) -> Serving {
    let listener = flint_runtime::gateway::listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let g = gateway.clone();
    let done = tokio::spawn(async move {
        g.serve(listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    Serving { addr, stop, done }
}

impl Serving {
    /// Stops accepting and waits, at most `limit`, for the server to drain
    /// and end without an error.
    pub async fn stop(self, limit: Duration) {
        let _ = self.stop.send(());
        tokio::time::timeout(limit, self.done)
            .await
            .unwrap()
            .unwrap();
    }
}
