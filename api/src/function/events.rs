//! A Function's asynchronous side (`spec.async`, `spec.schedules`):
//! delivery settings of fire-and-forget invocations, and cron triggers with
//! the schema of their expression and time zone. Apart from the spec because
//! the events queue and the scheduler read only these.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::duration::Duration;

/// Fire-and-forget invocation settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.maxAge) >= duration('1s') && duration(self.maxAge) <= duration('168h')").message("maxAge must be between 1s and 168h").field_path(".maxAge"))]
pub struct AsyncSpec {
    /// Retries after the first attempt before an invocation is dead-lettered.
    #[serde(default = "defaults::async_max_retries")]
    #[schemars(range(max = 100))]
    pub max_retries: u32,
    /// Oldest an invocation may get before it is dead-lettered without further retries.
    #[serde(default = "defaults::async_max_age")]
    pub max_age: Duration,
    /// Asynchronous deliveries in flight at once for this function.
    #[serde(default = "defaults::async_max_in_flight")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_in_flight: u32,
    /// Store the caller's Authorization and Cookie headers with each asynchronous invocation and deliver them to the function. Off by default: invocations are kept on disk and replayed later, so credentials are dropped unless the function needs them. Proxy-Authorization is never stored.
    #[serde(default)]
    pub store_credentials: bool,
}

impl Default for AsyncSpec {
    fn default() -> Self {
        Self {
            max_retries: defaults::async_max_retries(),
            max_age: defaults::async_max_age(),
            max_in_flight: defaults::async_max_in_flight(),
            store_credentials: false,
        }
    }
}

/// The schema pattern of a five-field cron expression (numbers in range,
/// `*`, ranges, lists, steps, month and weekday names).
pub const CRON_PATTERN: &str = "^((\\*|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]*)?(,(\\*|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]*)?)*) +((\\*|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]*)?(,(\\*|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]*)?)*) +((\\*|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]*)?(,(\\*|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]*)?)*) +((\\*|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC))?)(/[1-9][0-9]*)?(,(\\*|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC))?)(/[1-9][0-9]*)?)*) +((\\*|([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT)(-([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT))?)(/[1-9][0-9]*)?(,(\\*|([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT)(-([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT))?)(/[1-9][0-9]*)?)*)$";

/// A cron trigger, delivered as an asynchronous invocation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Five-field cron expression (minute hour day-of-month month day-of-week).
    #[schemars(length(min = 9, max = 128), regex(pattern = CRON_PATTERN))]
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "defaults::timezone")]
    #[schemars(schema_with = "timezone_schema")]
    pub timezone: String,
    /// Request path sent to the function.
    #[serde(default = "defaults::schedule_path")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = "^/"))]
    pub path: String,
    /// HTTP method of the invocation.
    #[serde(default)]
    pub method: ScheduleMethod,
    /// Request body sent with each invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
}

/// Every IANA time zone name the scheduler's database (chrono-tz) knows,
/// sorted, so that the generated CRD is the same on every run.
pub fn timezone_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Schema of `schedules[].timezone`: a string out of [`timezone_names`], so
/// the API server refuses a well-formed but unknown zone (`Mars/Olympus`)
/// exactly as [`crate::validate`] does.
fn timezone_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": timezone_names(),
    })
}

/// HTTP method of a scheduled invocation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ScheduleMethod {
    /// GET
    Get,
    /// POST
    #[default]
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}
