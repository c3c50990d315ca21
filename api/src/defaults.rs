//! Default values of the Function spec, one function each so serde, the CRD
//! schema (`default:`) and the docs all take them from the same place.

use crate::duration::Duration;

/// Default `port`: 8080.
pub fn port() -> u16 {
    8080
}
/// Default `timeoutSeconds`: 300.
pub fn timeout_seconds() -> u32 {
    300
}
/// Default `revisionHistoryLimit`: 5.
pub fn revision_history_limit() -> u32 {
    5
}
/// Default `scale.max`: 100.
pub fn max_scale() -> u32 {
    100
}
/// Default `scale.initial`: 1.
pub fn initial_scale() -> u32 {
    1
}
/// Default `scale.target`: 100 (requests in flight, or per second).
pub fn target() -> u32 {
    100
}
/// Default `scale.targetUtilization`: 70 percent.
pub fn target_utilization() -> u32 {
    70
}
/// Default `scale.stableWindow`: 60s.
pub fn stable_window() -> Duration {
    Duration::from_secs(60)
}
/// Default `scale.panicWindowPercent`: 10.
pub fn panic_window_percent() -> u32 {
    10
}
/// Default `scale.panicThresholdPercent`: 200.
pub fn panic_threshold_percent() -> u32 {
    200
}
/// Default `scale.scaleDownDelay`: 0s.
pub fn scale_down_delay() -> Duration {
    Duration::from_secs(0)
}
/// Default `scale.scaleToZeroGracePeriod`: 30s.
pub fn scale_to_zero_grace_period() -> Duration {
    Duration::from_secs(30)
}
/// Default `async.maxRetries`: 3.
pub fn async_max_retries() -> u32 {
    3
}
/// Default `async.maxAge`: 1h.
pub fn async_max_age() -> Duration {
    Duration::from_secs(3600)
}
/// Default `async.maxInFlight`: 10.
pub fn async_max_in_flight() -> u32 {
    10
}
/// Default `schedules[].timezone`: UTC.
pub fn timezone() -> String {
    "UTC".to_owned()
}
/// Default `schedules[].path`: `/`.
pub fn schedule_path() -> String {
    "/".to_owned()
}
