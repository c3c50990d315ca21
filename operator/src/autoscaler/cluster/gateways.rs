//! The gateway pods on a cluster: the ready, not terminating endpoints of
//! their Service's EndpointSlices, followed by a watch and kept as a list of
//! `/metrics` URLs that the direct source scrapes and the drainer asks.
//! Apart from the assembly because it is the one place that knows how
//! gateways are found; an empty list is an error for the source, never "no
//! load".

use std::time::Duration;

use flint_api::backend::RevisionKey;
use futures::StreamExt;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::sync::watch;

use super::super::source::direct::DirectSource;
use super::super::source::{MetricsSource, Pending, Readings, SourceError};
use super::store_settled;

/// How long one scrape of a gateway may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);

/// The `/metrics` URLs of the ready, not terminating endpoints in `slices`.
pub fn gateway_urls<'a>(
    slices: impl IntoIterator<Item = &'a EndpointSlice>,
    port: u16,
) -> Vec<String> {
    let mut urls: Vec<String> = slices
        .into_iter()
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| {
            let c = e.conditions.as_ref();
            c.and_then(|c| c.ready).unwrap_or(true)
                && !c.and_then(|c| c.terminating).unwrap_or(false)
        })
        .flat_map(|e| e.addresses.iter())
        .map(|ip| {
            if ip.contains(':') {
                format!("http://[{ip}]:{port}/metrics")
            } else {
                format!("http://{ip}:{port}/metrics")
            }
        })
        .collect();
    urls.sort();
    urls.dedup();
    urls
}

/// The direct source over a changing set of gateways. No gateway known is
/// an error, never "no load": an empty list must not scale anything to zero.
pub(super) struct Discovered {
    inner: DirectSource,
    urls: watch::Receiver<Vec<String>>,
}

impl Discovered {
    /// The direct source over the gateways `urls` lists, as they change.
    pub(super) fn new(urls: watch::Receiver<Vec<String>>) -> Self {
        Self {
            inner: DirectSource::new(Vec::new(), SCRAPE_TIMEOUT),
            urls,
        }
    }
}

impl MetricsSource for Discovered {
    fn name(&self) -> &'static str {
        "direct"
    }

    async fn collect(&mut self, revisions: &[RevisionKey]) -> Result<Readings, SourceError> {
        if self.urls.has_changed().unwrap_or(false) {
            let urls = self.urls.borrow_and_update().clone();
            self.inner.set_urls(urls);
        }
        if self.urls.borrow().is_empty() {
            return Err(SourceError::GatewaysDown { up: 0, total: 0 });
        }
        self.inner.collect(revisions).await
    }

    fn take_pending(&mut self) -> Option<Pending> {
        self.inner.take_pending()
    }
}

pub(super) async fn follow_gateways(
    api: Api<EndpointSlice>,
    selector: String,
    port: u16,
    urls: watch::Sender<Vec<String>>,
) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&selector);
    let mut events = reflector(writer, watcher(api, config))
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        if !store_settled(event, "the gateway EndpointSlices") {
            continue;
        }
        let state = reader.state();
        let found = gateway_urls(state.iter().map(|s| s.as_ref()), port);
        urls.send_if_modified(|current| {
            let changed = *current != found;
            if changed {
                tracing::info!(gateways = found.len(), "gateway list changed");
                *current = found.clone();
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions};

    #[test]
    fn only_ready_serving_gateways_are_scraped() {
        let endpoint = |ip: &str, ready: Option<bool>, terminating: Option<bool>| Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready,
                serving: None,
                terminating,
            }),
            ..Endpoint::default()
        };
        let slice = EndpointSlice {
            address_type: "IPv4".into(),
            endpoints: vec![
                endpoint("10.0.0.2", Some(true), None),
                endpoint("10.0.0.1", None, None),
                endpoint("10.0.0.3", Some(false), None),
                endpoint("10.0.0.4", Some(true), Some(true)),
                endpoint("fd00::5", Some(true), Some(false)),
            ],
            ..EndpointSlice::default()
        };
        assert_eq!(
            gateway_urls([&slice, &slice], 9091),
            [
                "http://10.0.0.1:9091/metrics",
                "http://10.0.0.2:9091/metrics",
                "http://[fd00::5]:9091/metrics"
            ]
        );
    }

    #[tokio::test]
    async fn no_known_gateway_is_an_error_not_zero_load() {
        let (_tx, rx) = watch::channel(Vec::new());
        let mut source = Discovered {
            inner: DirectSource::new(Vec::new(), SCRAPE_TIMEOUT),
            urls: rx,
        };
        let key = RevisionKey::new("default", "a", "a-00001");
        let got = source.collect(&[key]).await;
        assert!(
            matches!(got, Err(SourceError::GatewaysDown { up: 0, total: 0 })),
            "{got:?}"
        );
    }
}
