//! The cluster's tick store: one ConfigMap (`flint-schedule-ticks` in the
//! operator's namespace) mapping each schedule key to the last tick fired.
//! A claim is a read followed by a write carrying the read's
//! `resourceVersion`: of two replicas racing for one tick, the API server
//! accepts one write and answers the other 409, which then re-reads and
//! sees the tick taken.

use std::collections::BTreeMap;

use flint_api::backend::{TickClaimError, TickStore};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ObjectMeta, PostParams};

/// Name of the ConfigMap.
pub const TICKS_CONFIGMAP: &str = "flint-schedule-ticks";
/// Most read-write rounds per claim before giving up.
const MAX_ROUNDS: usize = 8;

/// Tick claims in a ConfigMap, with optimistic concurrency.
#[derive(Clone)]
pub struct ConfigMapTicks {
    api: Api<ConfigMap>,
}

impl std::fmt::Debug for ConfigMapTicks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigMapTicks").finish_non_exhaustive()
    }
}

impl ConfigMapTicks {
    /// Claims in the ConfigMap of `namespace`.
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
        }
    }
}

fn conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409)
}

impl TickStore for ConfigMapTicks {
    async fn claim(&self, schedule: &str, tick: i64) -> Result<bool, TickClaimError> {
        let fail = |reason: String| TickClaimError {
            schedule: schedule.to_owned(),
            tick,
            reason,
        };
        for _ in 0..MAX_ROUNDS {
            let current = self
                .api
                .get_opt(TICKS_CONFIGMAP)
                .await
                .map_err(|e| fail(e.to_string()))?;
            let written = match current {
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(TICKS_CONFIGMAP.into()),
                            ..ObjectMeta::default()
                        },
                        data: Some(BTreeMap::from([(schedule.to_owned(), tick.to_string())])),
                        ..ConfigMap::default()
                    };
                    self.api.create(&PostParams::default(), &cm).await
                }
                Some(mut cm) => {
                    let data = cm.data.get_or_insert_with(BTreeMap::new);
                    let last = data.get(schedule).and_then(|v| v.parse::<i64>().ok());
                    if last.is_some_and(|last| last >= tick) {
                        return Ok(false);
                    }
                    data.insert(schedule.to_owned(), tick.to_string());
                    // `cm` carries the resourceVersion read above.
                    self.api
                        .replace(TICKS_CONFIGMAP, &PostParams::default(), &cm)
                        .await
                }
            };
            match written {
                Ok(_) => return Ok(true),
                Err(err) if conflict(&err) => continue,
                Err(err) => return Err(fail(err.to_string())),
            }
        }
        Err(fail(format!(
            "still conflicting after {MAX_ROUNDS} attempts"
        )))
    }
}

#[cfg(test)]
#[path = "configmap_tests.rs"]
mod tests;
