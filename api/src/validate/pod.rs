//! Validation of the pod-template fields a Function passes through to its
//! pods (probes, security contexts, scheduling, pod metadata, extra
//! containers). Each check is one the API server makes too: through the
//! Function's schema and CEL rules at once where a structural schema can
//! say it, otherwise when it creates the revision's Deployment.

use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Affinity, Container, PodSecurityContext, Probe, SeccompProfile, SecurityContext,
};

use super::ValidationErrors;
use crate::function::FunctionSpec;
use crate::names::{self, CONTAINER_NAME, RESERVED_POD_KEYS};
use crate::pod::{MAX_EXTRA_CONTAINERS, PROBE_HANDLER_MESSAGE, PROBE_SUCCESS_MESSAGE};

/// Checks every pod-template field of `spec`.
pub(super) fn validate_pod(spec: &FunctionSpec, errs: &mut ValidationErrors) {
    for (path, probe, liveness) in [
        ("spec.readinessProbe", &spec.readiness_probe, false),
        ("spec.livenessProbe", &spec.liveness_probe, true),
        ("spec.startupProbe", &spec.startup_probe, true),
    ] {
        if let Some(probe) = probe {
            validate_probe(path, probe, liveness, errs);
        }
    }
    if let Some(dir) = &spec.working_dir
        && !dir.starts_with('/')
    {
        errs.push(
            "spec.workingDir",
            format!("{dir:?} must be an absolute path"),
        );
    }
    if let Some(context) = &spec.security_context {
        validate_security_context("spec.securityContext", context, errs);
    }
    if let Some(context) = &spec.pod_security_context {
        validate_pod_security_context(context, errs);
    }
    validate_metadata_map("spec.podLabels", &spec.pod_labels, true, errs);
    validate_metadata_map("spec.podAnnotations", &spec.pod_annotations, false, errs);
    validate_node_selector(&spec.node_selector, errs);
    validate_scheduling(spec, errs);
    validate_containers(spec, errs);
}

fn validate_probe(path: &str, probe: &Probe, liveness: bool, errs: &mut ValidationErrors) {
    let handlers = [
        probe.exec.is_some(),
        probe.http_get.is_some(),
        probe.tcp_socket.is_some(),
        probe.grpc.is_some(),
    ];
    if handlers.iter().filter(|h| **h).count() != 1 {
        errs.push(path, PROBE_HANDLER_MESSAGE);
    }
    if liveness && probe.success_threshold.is_some_and(|s| s != 1) {
        errs.push(format!("{path}.successThreshold"), PROBE_SUCCESS_MESSAGE);
    }
}

fn non_negative(path: String, id: Option<i64>, errs: &mut ValidationErrors) {
    if let Some(id) = id
        && id < 0
    {
        errs.push(path, format!("{id} must not be negative"));
    }
}

fn validate_seccomp(path: &str, profile: Option<&SeccompProfile>, errs: &mut ValidationErrors) {
    if let Some(profile) = profile
        && !matches!(
            profile.type_.as_str(),
            "RuntimeDefault" | "Unconfined" | "Localhost"
        )
    {
        errs.push(
            format!("{path}.seccompProfile.type"),
            format!(
                "{:?} must be RuntimeDefault, Unconfined or Localhost",
                profile.type_
            ),
        );
    }
}

fn validate_security_context(path: &str, c: &SecurityContext, errs: &mut ValidationErrors) {
    if c.privileged == Some(true) && c.allow_privilege_escalation == Some(false) {
        errs.push(
            format!("{path}.allowPrivilegeEscalation"),
            "must not be false for a privileged container",
        );
    }
    non_negative(format!("{path}.runAsUser"), c.run_as_user, errs);
    non_negative(format!("{path}.runAsGroup"), c.run_as_group, errs);
    validate_seccomp(path, c.seccomp_profile.as_ref(), errs);
}

fn validate_pod_security_context(c: &PodSecurityContext, errs: &mut ValidationErrors) {
    let path = "spec.podSecurityContext";
    non_negative(format!("{path}.runAsUser"), c.run_as_user, errs);
    non_negative(format!("{path}.runAsGroup"), c.run_as_group, errs);
    non_negative(format!("{path}.fsGroup"), c.fs_group, errs);
    validate_seccomp(path, c.seccomp_profile.as_ref(), errs);
}

/// Pod labels (`labels`) or annotations: keys are qualified names and none
/// of Flint's own; label values are label values.
fn validate_metadata_map(
    path: &str,
    map: &BTreeMap<String, String>,
    labels: bool,
    errs: &mut ValidationErrors,
) {
    for (key, value) in map {
        if RESERVED_POD_KEYS.contains(&key.as_str()) {
            errs.push(
                path,
                format!("{key:?} is set by Flint itself; choose another key"),
            );
        } else if !names::is_qualified_name(key) {
            errs.push(path, format!("key {key:?} {QUALIFIED_NAME_RULE}"));
        }
        if labels && !names::is_label_value(value) {
            errs.push(
                path,
                format!("value {value:?} of {key:?} {LABEL_VALUE_RULE}"),
            );
        }
    }
}

const QUALIFIED_NAME_RULE: &str = "must be a label key: an optional DNS-subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
const LABEL_VALUE_RULE: &str = "must be a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";

fn validate_node_selector(map: &BTreeMap<String, String>, errs: &mut ValidationErrors) {
    let path = "spec.nodeSelector";
    for (key, value) in map {
        if !names::is_qualified_name(key) {
            errs.push(path, format!("key {key:?} {QUALIFIED_NAME_RULE}"));
        }
        if !names::is_label_value(value) {
            errs.push(
                path,
                format!("value {value:?} of {key:?} {LABEL_VALUE_RULE}"),
            );
        }
    }
}

fn validate_scheduling(spec: &FunctionSpec, errs: &mut ValidationErrors) {
    for (i, t) in spec.tolerations.iter().enumerate() {
        let path = format!("spec.tolerations[{i}]");
        let operator = t.operator.as_deref();
        if !matches!(operator, None | Some("Exists" | "Equal")) {
            errs.push(
                format!("{path}.operator"),
                format!("{:?} must be Exists or Equal", operator.unwrap_or_default()),
            );
        }
        if let Some(effect) = t.effect.as_deref()
            && !matches!(effect, "" | "NoSchedule" | "PreferNoSchedule" | "NoExecute")
        {
            errs.push(
                format!("{path}.effect"),
                format!("{effect:?} must be NoSchedule, PreferNoSchedule or NoExecute"),
            );
        }
        if operator == Some("Exists") && t.value.as_deref().is_some_and(|v| !v.is_empty()) {
            errs.push(
                format!("{path}.value"),
                "a toleration with operator Exists must not have a value",
            );
        }
    }
    for (i, c) in spec.topology_spread_constraints.iter().enumerate() {
        let path = format!("spec.topologySpreadConstraints[{i}]");
        if c.max_skew < 1 {
            errs.push(
                format!("{path}.maxSkew"),
                format!("{} must be at least 1", c.max_skew),
            );
        }
        if c.topology_key.is_empty() {
            errs.push(format!("{path}.topologyKey"), "must not be empty");
        }
        if !matches!(
            c.when_unsatisfiable.as_str(),
            "DoNotSchedule" | "ScheduleAnyway"
        ) {
            errs.push(
                format!("{path}.whenUnsatisfiable"),
                format!(
                    "{:?} must be DoNotSchedule or ScheduleAnyway",
                    c.when_unsatisfiable
                ),
            );
        }
    }
    if let Some(affinity) = &spec.affinity {
        validate_affinity(affinity, errs);
    }
    for (path, name) in [
        ("spec.runtimeClassName", &spec.runtime_class_name),
        ("spec.priorityClassName", &spec.priority_class_name),
    ] {
        if let Some(name) = name
            && !names::is_dns1123_subdomain(name)
        {
            errs.push(
                path,
                format!("{name:?} must be a DNS subdomain: lowercase letters, digits, '-' and '.'"),
            );
        }
    }
}

fn validate_affinity(affinity: &Affinity, errs: &mut ValidationErrors) {
    let mut weights: Vec<(String, i32)> = Vec::new();
    let preferred = "preferredDuringSchedulingIgnoredDuringExecution";
    if let Some(node) = &affinity.node_affinity {
        for (i, t) in node
            .preferred_during_scheduling_ignored_during_execution
            .iter()
            .flatten()
            .enumerate()
        {
            weights.push((
                format!("spec.affinity.nodeAffinity.{preferred}[{i}].weight"),
                t.weight,
            ));
        }
    }
    for (kind, terms) in [
        (
            "podAffinity",
            affinity.pod_affinity.as_ref().and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
        (
            "podAntiAffinity",
            affinity.pod_anti_affinity.as_ref().and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
        ),
    ] {
        for (i, t) in terms.into_iter().flatten().enumerate() {
            weights.push((
                format!("spec.affinity.{kind}.{preferred}[{i}].weight"),
                t.weight,
            ));
        }
    }
    for (path, weight) in weights {
        if !(1..=100).contains(&weight) {
            errs.push(
                path,
                format!("{weight} is out of range; must be between 1 and 100"),
            );
        }
    }
}

/// Init containers and sidecars: DNS-label names, unique across both lists
/// and not the function's own; an image each; none declaring the function's
/// port; volume mounts naming a volume of the spec.
fn validate_containers(spec: &FunctionSpec, errs: &mut ValidationErrors) {
    let volumes: HashSet<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut seen: HashSet<&str> = HashSet::new();
    for (list, containers) in [
        ("spec.initContainers", &spec.init_containers),
        ("spec.sidecars", &spec.sidecars),
    ] {
        if containers.len() > MAX_EXTRA_CONTAINERS {
            errs.push(
                list,
                format!("must have at most {MAX_EXTRA_CONTAINERS} entries"),
            );
        }
        for (i, c) in containers.iter().enumerate() {
            validate_container(
                &format!("{list}[{i}]"),
                c,
                spec.port,
                &volumes,
                &mut seen,
                errs,
            );
        }
    }
}

fn validate_container<'a>(
    path: &str,
    c: &'a Container,
    port: u16,
    volumes: &HashSet<&str>,
    seen: &mut HashSet<&'a str>,
    errs: &mut ValidationErrors,
) {
    if c.name == CONTAINER_NAME {
        errs.push(
            format!("{path}.name"),
            format!("the name {CONTAINER_NAME:?} is the function's own container"),
        );
    } else if !names::is_dns1123_label(&c.name) {
        errs.push(
            format!("{path}.name"),
            format!("{:?} must be a DNS label", c.name),
        );
    } else if !seen.insert(c.name.as_str()) {
        errs.push(
            format!("{path}.name"),
            format!("{:?} is used by another sidecar or init container", c.name),
        );
    }
    if c.image.as_deref().is_none_or(str::is_empty) {
        errs.push(format!("{path}.image"), "is required");
    }
    for (j, p) in c.ports.iter().flatten().enumerate() {
        if p.container_port == i32::from(port) {
            errs.push(
                format!("{path}.ports[{j}].containerPort"),
                format!(
                    "{port} is the function's port (spec.port); the function's container serves it"
                ),
            );
        }
    }
    for (j, m) in c.volume_mounts.iter().flatten().enumerate() {
        if !volumes.contains(m.name.as_str()) {
            errs.push(
                format!("{path}.volumeMounts[{j}].name"),
                format!("{:?} is not a volume of spec.volumes", m.name),
            );
        }
    }
}
