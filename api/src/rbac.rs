//! The Kubernetes permissions Flint's components use, listed once.
//!
//! The Helm chart's Roles and ClusterRoles must grant exactly these rules
//! (a test renders the chart and compares), and a test in the operator crate
//! derives the calls the operator and the gateway make from their sources and
//! compares them with these lists: a new API call without a rule here, or a
//! rule here that no code needs, fails a test.

/// Where a rule is granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// In every namespace (a ClusterRole bound by a ClusterRoleBinding):
    /// Functions and their objects live in any namespace.
    Cluster,
    /// Only in the component's own namespace (a Role and RoleBinding), e.g.
    /// the operator's leader-election Lease.
    OwnNamespace,
    /// Where Functions run: in every namespace (a ClusterRole) by default,
    /// or, when the chart lists the namespaces that hold Functions
    /// (`operator.functionNamespaces`), only there (a Role and RoleBinding in
    /// each). For the rules that write objects Flint does not create, so
    /// they reach no further than they must.
    FunctionNamespaces,
}

/// One RBAC rule: `verbs` on `resource` (with its subresource, as in
/// `functions/status`) of `api_group` (`""` is the core group).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// API group, `""` for the core group.
    pub api_group: &'static str,
    /// Plural resource name, `resource/subresource` for a subresource.
    pub resource: &'static str,
    /// Verbs, in the order RBAC documentation lists them.
    pub verbs: &'static [&'static str],
    /// Where the rule is granted.
    pub scope: Scope,
    /// Which code needs it, for reviewers of the chart.
    pub why: &'static str,
}

/// What `flint operator` (reconciler, autoscaler, leader election, Events) needs.
pub const OPERATOR: &[Rule] = &[
    Rule {
        api_group: "flint.dev",
        resource: "functions",
        verbs: &["list", "watch", "patch"],
        scope: Scope::Cluster,
        why: "the controller lists and watches Functions; a finalizer left by earlier operator versions is removed by patch",
    },
    Rule {
        api_group: "flint.dev",
        resource: "functions/status",
        verbs: &["patch"],
        scope: Scope::Cluster,
        why: "status is written with server-side apply",
    },
    Rule {
        api_group: "flint.dev",
        resource: "functions/finalizers",
        verbs: &["update"],
        scope: Scope::Cluster,
        why: "revision objects carry owner references with blockOwnerDeletion, which the OwnerReferencesPermissionEnforcement admission plugin allows only to who may update the owner's finalizers",
    },
    Rule {
        api_group: "apps",
        resource: "deployments",
        verbs: &["get", "list", "watch", "create", "patch", "delete"],
        scope: Scope::Cluster,
        why: "revision Deployments: listed per Function, watched (owned), applied (server-side apply creates them, which RBAC checks as create), garbage-collected; the autoscaler reads their replicas",
    },
    Rule {
        api_group: "apps",
        resource: "deployments/scale",
        verbs: &["patch"],
        scope: Scope::Cluster,
        why: "the autoscaler, the only writer of replica counts, sets them through the scale subresource",
    },
    Rule {
        api_group: "",
        resource: "services",
        verbs: &["list", "watch", "create", "patch", "delete"],
        scope: Scope::Cluster,
        why: "revision Services: listed per Function, watched (owned), applied (created by server-side apply), garbage-collected",
    },
    Rule {
        api_group: "",
        resource: "pods",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        why: "revision health (crash loops, image pulls) comes from the pods, which the controller watches; the autoscaler lists a revision's pods to pick the ones to remove",
    },
    Rule {
        api_group: "",
        resource: "pods",
        verbs: &["patch"],
        scope: Scope::FunctionNamespaces,
        why: "before a scale-down the autoscaler sets the controller.kubernetes.io/pod-deletion-cost annotation on the pods to remove first, and changes nothing else (RBAC cannot limit a patch to one field: the code is the limit, and the rule is confined to the namespaces that hold Functions where the chart lists them)",
    },
    Rule {
        api_group: "",
        resource: "secrets",
        verbs: &["get"],
        scope: Scope::FunctionNamespaces,
        why: "when a revision is cut, its image tag is resolved to a digest with the credentials of the Secrets the Function (or its ServiceAccount) names in imagePullSecrets, read one by one by name (never listed or watched; RBAC cannot name Secrets chosen by each Function, so the code is the limit, and the rule is confined to the namespaces that hold Functions where the chart lists them)",
    },
    Rule {
        api_group: "",
        resource: "serviceaccounts",
        verbs: &["get"],
        scope: Scope::FunctionNamespaces,
        why: "when a revision is cut, the imagePullSecrets of the Function's ServiceAccount are read too (Kubernetes adds them to the pods'), by name, never listed or watched",
    },
    Rule {
        api_group: "events.k8s.io",
        resource: "events",
        verbs: &["create", "patch"],
        scope: Scope::Cluster,
        why: "Events on Functions; a repeated Event is patched into a series",
    },
    Rule {
        api_group: "coordination.k8s.io",
        resource: "leases",
        verbs: &["get", "create", "update"],
        scope: Scope::OwnNamespace,
        why: "leader election on one Lease in the operator's namespace",
    },
    Rule {
        api_group: "discovery.k8s.io",
        resource: "endpointslices",
        verbs: &["list", "watch"],
        scope: Scope::OwnNamespace,
        why: "the direct metrics source finds the gateway pods to scrape in the gateway Service's EndpointSlices (the gateway runs in the operator's namespace)",
    },
    Rule {
        api_group: "",
        resource: "configmaps",
        verbs: &["get", "create", "update"],
        scope: Scope::OwnNamespace,
        why: "the cron scheduler claims each schedule tick in one ConfigMap in the operator's namespace, with optimistic concurrency, so a tick fires once across restarts and failovers",
    },
];

/// What `flint gateway` (cluster mode) needs.
pub const GATEWAY: &[Rule] = &[
    Rule {
        api_group: "flint.dev",
        resource: "functions",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        why: "routes come from each Function's spec and status.traffic",
    },
    Rule {
        api_group: "discovery.k8s.io",
        resource: "endpointslices",
        verbs: &["list", "watch"],
        scope: Scope::Cluster,
        why: "the ready pods of each revision come from its Service's EndpointSlices",
    },
    Rule {
        api_group: "",
        resource: "secrets",
        verbs: &["get", "list", "watch"],
        scope: Scope::Cluster,
        why: "API keys, HMAC keys and certificates come from the Secrets a Function's spec.auth and spec.tls name (held in memory only while named)",
    },
];

/// Flattens rules into sorted `(api_group, resource, verb, scope)` tuples, the
/// form tests compare. (A test keeps each verb of a resource in one scope.)
pub fn permissions(rules: &[Rule]) -> Vec<(&'static str, &'static str, &'static str, Scope)> {
    let mut out: Vec<_> = rules
        .iter()
        .flat_map(|r| {
            r.verbs
                .iter()
                .map(move |v| (r.api_group, r.resource, *v, r.scope))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flattens_every_verb_once_sorted() {
        let rules = [
            Rule {
                api_group: "apps",
                resource: "deployments",
                verbs: &["patch", "list"],
                scope: Scope::Cluster,
                why: "",
            },
            Rule {
                api_group: "",
                resource: "pods",
                verbs: &["list", "list"],
                scope: Scope::Cluster,
                why: "",
            },
        ];
        assert_eq!(
            permissions(&rules),
            vec![
                ("", "pods", "list", Scope::Cluster),
                ("apps", "deployments", "list", Scope::Cluster),
                ("apps", "deployments", "patch", Scope::Cluster),
            ]
        );
    }

    #[test]
    fn no_rule_grants_wildcards_or_repeats_a_resource() {
        for rules in [OPERATOR, GATEWAY] {
            let mut seen = std::collections::BTreeSet::new();
            for r in rules {
                // A resource appears once per scope: the verbs granted more
                // narrowly have a rule (and a reason) of their own.
                assert!(
                    seen.insert((r.api_group, r.resource, r.scope)),
                    "{} twice in one scope",
                    r.resource
                );
                assert!(!r.why.is_empty(), "{}: no reason given", r.resource);
                assert!(!r.resource.contains('*') && !r.api_group.contains('*'));
                for other in rules.iter().filter(|o| {
                    o.api_group == r.api_group && o.resource == r.resource && o.scope != r.scope
                }) {
                    assert!(
                        !r.verbs.iter().any(|v| other.verbs.contains(v)),
                        "{}: a verb granted in two scopes",
                        r.resource
                    );
                }
                assert!(r.verbs.iter().all(|v| *v != "*"));
            }
        }
    }
}
