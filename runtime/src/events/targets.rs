//! The Functions that accept asynchronous invocations, with their `async`
//! settings: fed by whoever feeds the gateway's routes (`flint dev`'s
//! manifests, the cluster's Function watch), read by the intake (unknown
//! Function → 404) and by the delivery worker (one loop per Function).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use flint_api::{AsyncSpec, Function};
use tokio::sync::watch;

use super::invocation::FunctionKey;

/// A Function's delivery settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Oldest an invocation may get.
    pub max_age: Duration,
    /// Deliveries in flight at once.
    pub max_in_flight: u32,
    /// The Function's per-request timeout (`timeoutSeconds`).
    pub timeout: Duration,
    /// Whether the caller's `Authorization` and `Cookie` are stored with
    /// its invocations (`async.storeCredentials`); dropped otherwise.
    pub store_credentials: bool,
}

impl Target {
    /// Settings from a Function's `async` spec and timeout.
    pub fn from_spec(spec: &AsyncSpec, timeout_seconds: u32) -> Self {
        Self {
            max_retries: spec.max_retries,
            max_age: spec.max_age.into(),
            max_in_flight: spec.max_in_flight.max(1),
            timeout: Duration::from_secs(u64::from(timeout_seconds.max(1))),
            store_credentials: spec.store_credentials,
        }
    }
}

/// The current set of targets; cheap to clone, all clones see updates.
#[derive(Clone, Debug)]
pub struct Targets {
    map: Arc<ArcSwap<HashMap<FunctionKey, Target>>>,
    changed: watch::Sender<u64>,
}

impl Default for Targets {
    fn default() -> Self {
        Self {
            map: Arc::new(ArcSwap::from_pointee(HashMap::new())),
            changed: watch::channel(0).0,
        }
    }
}

impl Targets {
    /// Replaces every target at once.
    pub fn set(&self, targets: HashMap<FunctionKey, Target>) {
        self.map.store(Arc::new(targets));
        self.changed.send_modify(|v| *v += 1);
    }

    /// Replaces every target with those of `functions` (namespace `default`
    /// when a Function has none).
    pub fn set_functions(&self, functions: &[Function]) {
        let map = functions
            .iter()
            .filter_map(|f| {
                let name = f.metadata.name.clone()?;
                let ns = f
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                Some((
                    FunctionKey::new(ns, name),
                    Target::from_spec(&f.spec.async_, f.spec.timeout_seconds),
                ))
            })
            .collect();
        self.set(map);
    }

    /// The target of `f`, if it accepts invocations.
    pub fn get(&self, f: &FunctionKey) -> Option<Target> {
        self.map.load().get(f).copied()
    }

    /// Every target.
    pub fn all(&self) -> Arc<HashMap<FunctionKey, Target>> {
        self.map.load_full()
    }

    /// Changes whenever the set is replaced.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_come_from_the_async_spec() {
        let spec = AsyncSpec {
            max_in_flight: 0,
            store_credentials: true,
            ..AsyncSpec::default()
        };
        let target = Target::from_spec(&spec, 0);
        assert_eq!(target.max_in_flight, 1, "at least one in flight");
        assert_eq!(target.timeout, Duration::from_secs(1));
        assert!(target.store_credentials);
        assert!(!Target::from_spec(&AsyncSpec::default(), 30).store_credentials);
    }
}
