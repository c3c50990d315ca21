//! A Function's probes as run against a local replica: HTTP and TCP probes
//! on the replica's own port, with the manifest's timings; other handlers
//! get a note, and what cannot be probed locally is refused.

use std::time::Duration;

use flint_api::k8s_openapi::api::core::v1::Probe;
use flint_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use flint_runtime::local::{LocalProbe, ProbeCheck};

use super::LocalError;

/// A manifest probe as run against a local replica; `None` (with a note)
/// for handlers `flint dev` does not run (exec, gRPC).
pub(super) fn local_probe(
    p: &Probe,
    field: &str,
    port: u16,
    who: &str,
    notes: &mut Vec<String>,
) -> Result<Option<LocalProbe>, LocalError> {
    let refuse = |field: String, reason: String| LocalError::NotHonoured {
        function: who.to_owned(),
        field,
        reason,
    };
    let check_port = |field: String, wanted: &IntOrString| match wanted {
        IntOrString::Int(n) if i64::from(*n) == i64::from(port) => Ok(()),
        IntOrString::String(s) if s == "http" => Ok(()),
        other => Err(refuse(
            field,
            format!(
                "{} is not the function's port ({port}, named http); flint dev gives each replica its own port ($PORT) and can probe only that one",
                match other {
                    IntOrString::Int(n) => n.to_string(),
                    IntOrString::String(s) => format!("{s:?}"),
                }
            ),
        )),
    };
    let check_host = |field: String, host: &Option<String>| match host.as_deref() {
        None | Some("" | "localhost" | "127.0.0.1") => Ok(()),
        Some(other) => Err(refuse(
            field,
            format!("{other:?}: flint dev probes only the local replica"),
        )),
    };
    let check = if let Some(get) = &p.http_get {
        check_port(format!("{field}.httpGet.port"), &get.port)?;
        check_host(format!("{field}.httpGet.host"), &get.host)?;
        if get.scheme.as_deref().is_some_and(|s| s != "HTTP") {
            return Err(refuse(
                format!("{field}.httpGet.scheme"),
                "flint dev probes over plain HTTP only".into(),
            ));
        }
        let path = get.path.clone().unwrap_or_else(|| "/".into());
        let path = if path.starts_with('/') {
            path
        } else {
            format!("/{path}")
        };
        let headers = get
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        ProbeCheck::Http { path, headers }
    } else if let Some(tcp) = &p.tcp_socket {
        check_port(format!("{field}.tcpSocket.port"), &tcp.port)?;
        check_host(format!("{field}.tcpSocket.host"), &tcp.host)?;
        ProbeCheck::Tcp
    } else {
        let handler = if p.exec.is_some() { "exec" } else { "gRPC" };
        notes.push(format!(
            "function {who}: {field}: {handler} probes are not run by flint dev{}",
            if field == "spec.readinessProbe" {
                "; a replica is ready once it accepts connections on its port"
            } else {
                ""
            }
        ));
        return Ok(None);
    };
    let seconds = |value: Option<i32>, default: u64| {
        Duration::from_secs(value.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
    };
    let count = |value: Option<i32>, default: u32| {
        value
            .and_then(|v| u32::try_from(v).ok())
            .filter(|v| *v > 0)
            .unwrap_or(default)
    };
    Ok(Some(LocalProbe {
        check,
        initial_delay: seconds(p.initial_delay_seconds, 0),
        period: seconds(p.period_seconds, 10).max(Duration::from_secs(1)),
        timeout: seconds(p.timeout_seconds, 1).max(Duration::from_secs(1)),
        success_threshold: count(p.success_threshold, 1),
        failure_threshold: count(p.failure_threshold, 3),
    }))
}
