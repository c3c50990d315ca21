//! Metric names and label keys. The gateway exports them, the autoscaler reads
//! them, the chart's rules and dashboard query them: one spelling for all.

/// Counter: requests answered, by namespace, function, revision and status code.
pub const REQUESTS_TOTAL: &str = "flint_requests_total";
/// Histogram: request duration in seconds as seen by the gateway.
pub const REQUEST_DURATION_SECONDS: &str = "flint_request_duration_seconds";
/// Gauge: requests currently in flight per revision.
pub const REQUESTS_IN_FLIGHT: &str = "flint_requests_in_flight";
/// Counter: the time integral of in-flight requests per revision, in seconds.
/// Its rate over a window is the average concurrency over that window, which
/// is the autoscaler's primary signal.
pub const REQUEST_CONCURRENCY_SECONDS_TOTAL: &str = "flint_request_concurrency_seconds_total";
/// Gauge: requests waiting in a revision's activation queue.
pub const QUEUE_DEPTH: &str = "flint_queue_depth";
/// Counter: requests refused because a revision's activation queue was full.
pub const QUEUE_OVERFLOW_TOTAL: &str = "flint_queue_overflow_total";
/// Counter: cold starts (a request arrived while its revision had no ready replica).
pub const COLD_STARTS_TOTAL: &str = "flint_cold_starts_total";
/// Histogram: how long the first request of a cold start waited for a replica.
pub const COLD_START_DURATION_SECONDS: &str = "flint_cold_start_duration_seconds";
/// Gauge: replicas the autoscaler wants per revision.
pub const DESIRED_REPLICAS: &str = "flint_autoscaler_desired_replicas";
/// Gauge: replicas that exist per revision.
pub const ACTUAL_REPLICAS: &str = "flint_autoscaler_actual_replicas";
/// Gauge: 1 while a revision's autoscaler is in panic mode.
pub const PANIC_MODE: &str = "flint_autoscaler_panic_mode";
/// Gauge: pending asynchronous invocations per namespace and function, as
/// the autoscaler last read them (the maximum over gateways): the backlog
/// input of its decisions.
pub const AUTOSCALER_BACKLOG: &str = "flint_autoscaler_backlog";
/// Counter: autoscaler decisions, by reason.
pub const DECISIONS_TOTAL: &str = "flint_autoscaler_decisions_total";
/// Counter: failures to read the scaling signal, by source.
pub const METRICS_SOURCE_ERRORS_TOTAL: &str = "flint_autoscaler_metrics_source_errors_total";
/// Counter: images of new revisions, by outcome: `resolved` (the tag to a
/// digest), `as_written` (given by digest, or a skipped registry) or
/// `failed` (the revision was held back).
pub const IMAGE_RESOLUTIONS_TOTAL: &str = "flint_image_resolutions_total";
/// Histogram: how long resolving a new revision's image took (pull Secrets
/// read, registry asked), by outcome (`resolved` or `failed`).
pub const IMAGE_RESOLUTION_DURATION_SECONDS: &str = "flint_image_resolution_duration_seconds";
/// Counter: reconciles, by result.
pub const RECONCILES_TOTAL: &str = "flint_reconciles_total";
/// Counter: reconcile errors, by error kind.
pub const RECONCILE_ERRORS_TOTAL: &str = "flint_reconcile_errors_total";
/// Histogram: reconcile duration in seconds.
pub const RECONCILE_DURATION_SECONDS: &str = "flint_reconcile_duration_seconds";

/// Label: the Function's namespace.
pub const LABEL_NAMESPACE: &str = "namespace";
/// Label: the Function's name.
pub const LABEL_FUNCTION: &str = "function";
/// Label: the revision's name.
pub const LABEL_REVISION: &str = "revision";
/// Label: the HTTP status code of a response.
pub const LABEL_CODE: &str = "code";
/// Label: the reason of an autoscaler decision.
pub const LABEL_REASON: &str = "reason";

/// Counter: asynchronous invocations accepted (answered 202), per namespace and function.
pub const ASYNC_ACCEPTED_TOTAL: &str = "flint_async_accepted_total";
/// Counter: asynchronous invocations delivered (the function answered 2xx/3xx).
pub const ASYNC_DELIVERED_TOTAL: &str = "flint_async_delivered_total";
/// Counter: delivery attempts that failed transiently and were scheduled again.
pub const ASYNC_RETRIES_TOTAL: &str = "flint_async_retries_total";
/// Counter: invocations dead-lettered, by reason (`max_retries`, `max_age`, `rejected`).
pub const ASYNC_DEAD_LETTERS_TOTAL: &str = "flint_async_dead_letters_total";
/// Gauge: invocations accepted and not yet settled, per namespace and function:
/// the queue-depth signal of the autoscaler.
pub const ASYNC_PENDING: &str = "flint_async_pending";
/// Gauge: age in seconds of the oldest pending invocation, per namespace and function.
pub const ASYNC_OLDEST_PENDING_AGE_SECONDS: &str = "flint_async_oldest_pending_age_seconds";
/// Counter: result callbacks, by result (`delivered`, `retried`, `dropped`, `refused`).
pub const ASYNC_CALLBACKS_TOTAL: &str = "flint_async_callbacks_total";
/// Counter: asynchronous requests answered 503 because the queue did not take
/// them, by reason (`full`: the stream is at its byte limit; `nats`, `store`:
/// the queue is unreachable or failed).
pub const ASYNC_REFUSED_TOTAL: &str = "flint_async_refused_total";
/// Counter: scheduled (cron) invocations, by result (`fired`, `skipped`, `failed`).
pub const SCHEDULE_TICKS_TOTAL: &str = "flint_schedule_ticks_total";

/// Label: the result of a callback or a schedule tick.
pub const LABEL_RESULT: &str = "result";

/// Gauge: the gateway's memory budget in bytes (`--memory-budget-bytes`).
pub const MEMORY_BUDGET_BYTES: &str = "flint_memory_budget_bytes";
/// Gauge: bytes of the memory budget held by waiting requests, asynchronous
/// bodies and callbacks.
pub const MEMORY_BUDGET_HELD_BYTES: &str = "flint_memory_budget_held_bytes";
/// Counter: charges the memory budget refused (answered 503, or a callback
/// dropped), by use (`waiting_request`, `async_body`, `callback_body`).
pub const MEMORY_BUDGET_REFUSED_TOTAL: &str = "flint_memory_budget_refused_total";
/// Label: what a memory-budget charge was for.
pub const LABEL_USE: &str = "use";

/// Counter: replicas' `concurrency` slots this gateway handed to other
/// gateways (`direction="lent"`) and got from them (`"borrowed"`).
pub const CAPACITY_SLOTS_TOTAL: &str = "flint_capacity_slots_total";
/// Counter: asks for slots this gateway sent to other gateways, by result
/// (`answered`, `failed`: no answer in time, refused, or unreadable).
pub const CAPACITY_ASKS_TOTAL: &str = "flint_capacity_asks_total";
/// Requests the gateway refused for a Function's `spec.auth` (401, 403, or
/// 503 while its keys cannot be read), by Function and reason.
pub const AUTH_FAILURES_TOTAL: &str = "flint_auth_failures_total";
/// Label: which way slots went between gateways.
pub const LABEL_DIRECTION: &str = "direction";
