//! The autoscaling knobs of a Function (`spec.scale`): their CRD fields
//! and rules, their defaults, and the two values the autoscaler derives from
//! them. Apart from the spec because the autoscaler reads little else, and
//! `status.revisions[].scale` records them per revision.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::duration::Duration;

/// The autoscaling knobs (Knative KPA semantics). Defaults suit most HTTP functions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not exceed max").field_path(".min"))]
#[x_kube(validation = Rule::new("self.initial >= self.min && self.initial <= self.max").message("initial must lie between min and max").field_path(".initial"))]
#[x_kube(validation = Rule::new("duration(self.stableWindow) >= duration('6s') && duration(self.stableWindow) <= duration('1h')").message("stableWindow must be between 6s and 1h").field_path(".stableWindow"))]
#[x_kube(validation = Rule::new("duration(self.scaleDownDelay) <= duration('1h')").message("scaleDownDelay must be at most 1h").field_path(".scaleDownDelay"))]
#[x_kube(validation = Rule::new("duration(self.scaleToZeroGracePeriod) >= duration('1s') && duration(self.scaleToZeroGracePeriod) <= duration('1h')").message("scaleToZeroGracePeriod must be between 1s and 1h").field_path(".scaleToZeroGracePeriod"))]
pub struct ScaleSpec {
    /// Fewest replicas; 0 lets the function scale to zero when idle.
    #[serde(default)]
    #[schemars(range(max = 1000))]
    pub min: u32,
    /// Most replicas.
    #[serde(default = "defaults::max_scale")]
    #[schemars(range(min = 1, max = 1000))]
    pub max: u32,
    /// Replicas a new revision starts with (between min and max).
    #[serde(default = "defaults::initial_scale")]
    #[schemars(range(max = 1000))]
    pub initial: u32,
    /// Signal to scale on: concurrency (requests in flight) or rps (requests per second).
    #[serde(default)]
    pub metric: ScaleMetric,
    /// Soft target of the metric per replica.
    #[serde(default = "defaults::target")]
    #[schemars(range(min = 1, max = 100000))]
    pub target: u32,
    /// Percent of `target` actually aimed at, leaving headroom for bursts.
    #[serde(default = "defaults::target_utilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization: u32,
    /// Window the stable (non-panic) average is taken over.
    #[serde(default = "defaults::stable_window")]
    pub stable_window: Duration,
    /// Panic window as a percent of the stable window.
    #[serde(default = "defaults::panic_window_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub panic_window_percent: u32,
    /// Enter panic mode when the panic-window demand reaches this percent of current capacity.
    #[serde(default = "defaults::panic_threshold_percent")]
    #[schemars(range(min = 110, max = 1000))]
    pub panic_threshold_percent: u32,
    /// How long demand must stay low before scaling down takes effect.
    #[serde(default = "defaults::scale_down_delay")]
    pub scale_down_delay: Duration,
    /// Keep-alive policy for the last replica: fixed (the grace period) or adaptive (learned from idle times).
    #[serde(default)]
    pub keep_alive: KeepAlive,
    /// How long a revision with no traffic keeps its last replica before scaling to zero.
    #[serde(default = "defaults::scale_to_zero_grace_period")]
    pub scale_to_zero_grace_period: Duration,
}

/// The per-replica signal the autoscaler scales on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// Average requests in flight.
    #[default]
    Concurrency,
    /// Requests per second.
    Rps,
}

/// Keep-alive policy for a revision's last replica.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeepAlive {
    /// Keep the last replica for `scaleToZeroGracePeriod` after the last request.
    #[default]
    Fixed,
    /// Learn the function's idle-time histogram; keep or pre-warm the last replica accordingly.
    Adaptive,
    /// Choose keep and pre-warm windows that minimise expected cold starts plus the price of idle
    /// time, from the function's idle times and a population prior; rarely called functions are
    /// kept longer, timer-driven ones pre-warmed.
    Learned,
}

impl Default for ScaleSpec {
    fn default() -> Self {
        Self {
            min: 0,
            max: defaults::max_scale(),
            initial: defaults::initial_scale(),
            metric: ScaleMetric::default(),
            target: defaults::target(),
            target_utilization: defaults::target_utilization(),
            stable_window: defaults::stable_window(),
            panic_window_percent: defaults::panic_window_percent(),
            panic_threshold_percent: defaults::panic_threshold_percent(),
            scale_down_delay: defaults::scale_down_delay(),
            keep_alive: KeepAlive::default(),
            scale_to_zero_grace_period: defaults::scale_to_zero_grace_period(),
        }
    }
}

impl ScaleSpec {
    /// The per-replica value the autoscaler aims at: `target × targetUtilization%`.
    pub fn effective_target(&self) -> f64 {
        f64::from(self.target) * f64::from(self.target_utilization) / 100.0
    }

    /// The panic window: `panicWindowPercent` of the stable window, at least one second.
    pub fn panic_window(&self) -> Duration {
        let ms =
            self.stable_window.as_std().as_millis() * u128::from(self.panic_window_percent) / 100;
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX).max(1_000))
    }
}
