//! The embedded queue's in-memory index of unsettled invocations: per
//! Function, oldest first. It answers the depth metrics and whether a fetch
//! finding nothing due should keep polling, without reading the store; it
//! is rebuilt from the store when the store is opened.

use std::collections::{BTreeSet, HashMap};

use crate::events::invocation::FunctionKey;

/// Unsettled invocations per Function, oldest first, for the depth
/// metrics; by invocation key (`<ns>/<fn>/<id>`).
#[derive(Default)]
pub(super) struct Pending {
    /// Each Function's unsettled invocations: (accepted at, ms; key).
    pub(super) by_function: HashMap<FunctionKey, BTreeSet<(u64, String)>>,
    index: HashMap<String, (FunctionKey, u64)>,
}

impl Pending {
    /// Adds invocation `key` of `target`, accepted at `enqueued_ms`.
    pub(super) fn add(&mut self, target: FunctionKey, enqueued_ms: u64, key: String) {
        self.index
            .insert(key.clone(), (target.clone(), enqueued_ms));
        self.by_function
            .entry(target)
            .or_default()
            .insert((enqueued_ms, key));
    }

    /// The Function invocation `key` is for, while it is unsettled.
    pub(super) fn target_of(&self, key: &str) -> Option<FunctionKey> {
        self.index.get(key).map(|(target, _)| target.clone())
    }

    /// Removes invocation `key` (settled).
    pub(super) fn remove(&mut self, key: &str) {
        if let Some((target, at)) = self.index.remove(key)
            && let Some(set) = self.by_function.get_mut(&target)
        {
            set.remove(&(at, key.to_owned()));
            if set.is_empty() {
                self.by_function.remove(&target);
            }
        }
    }
}
