//! The chart's RBAC equals `flint_api::rbac`, the one list of what the
//! operator's and the gateway's code calls (operator/tests/rbac_calls.rs
//! checks the code against the same list). Renders the chart with the real
//! `helm` (installed into .tools/bin by scripts/chart-tools).

mod chart_support;

use std::collections::BTreeSet;
use std::path::Path;

use chart_support::{render, repo, s, strings};
use flint_api::rbac::{self, Rule, Scope};
use serde_yaml::Value;

/// (group, resource, verb, role kind, role namespace) granted to `account`.
type Grant = (String, String, String, String, String);

/// Every permission the rendered objects grant to ServiceAccount `account`
/// of namespace flint-system, through any binding.
fn grants(objects: &[Value], account: &str) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for binding in objects {
        let kind = s(binding, &["kind"]);
        if kind != "RoleBinding" && kind != "ClusterRoleBinding" {
            continue;
        }
        let binds_account = binding["subjects"].as_sequence().unwrap().iter().any(|x| {
            s(x, &["kind"]) == "ServiceAccount"
                && s(x, &["name"]) == account
                && s(x, &["namespace"]) == "flint-system"
        });
        if !binds_account {
            continue;
        }
        let role_kind = s(binding, &["roleRef", "kind"]);
        let role_name = s(binding, &["roleRef", "name"]);
        let binding_ns = s(binding, &["metadata", "namespace"]);
        let role = objects
            .iter()
            .find(|r| {
                s(r, &["kind"]) == role_kind
                    && s(r, &["metadata", "name"]) == role_name
                    && s(r, &["metadata", "namespace"]) == binding_ns
            })
            .unwrap_or_else(|| panic!("{kind} {role_name}: its {role_kind} is not in the chart"));
        for rule in role["rules"].as_sequence().unwrap() {
            assert!(
                rule.get("resourceNames").is_none() && rule.get("nonResourceURLs").is_none(),
                "unexpected rule shape {rule:?}"
            );
            for g in strings(rule, "apiGroups") {
                for r in strings(rule, "resources") {
                    for v in strings(rule, "verbs") {
                        out.insert((
                            g.clone(),
                            r.clone(),
                            v,
                            role_kind.to_owned(),
                            binding_ns.to_owned(),
                        ));
                    }
                }
            }
        }
    }
    out
}

/// What `rules` say the chart must grant: Cluster scope as a ClusterRole,
/// own-namespace scope as a Role in `own_ns`; `cluster_as` overrides where
/// cluster-scoped rules go (the gateway's watchNamespace); function-namespace
/// scope as a ClusterRole, or a Role in each of `function_namespaces` when
/// there are any (the operator's functionNamespaces).
fn expected(
    rules: &[Rule],
    own_ns: &str,
    cluster_as: Option<&str>,
    function_namespaces: &[&str],
) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for (g, r, v, scope) in rbac::permissions(rules) {
        let places: Vec<(&str, &str)> = match (scope, cluster_as) {
            (Scope::Cluster, None) => vec![("ClusterRole", "")],
            (Scope::Cluster, Some(ns)) => vec![("Role", ns)],
            (Scope::OwnNamespace, _) => vec![("Role", own_ns)],
            (Scope::FunctionNamespaces, _) if function_namespaces.is_empty() => {
                vec![("ClusterRole", "")]
            }
            (Scope::FunctionNamespaces, _) => {
                function_namespaces.iter().map(|ns| ("Role", *ns)).collect()
            }
        };
        for (kind, ns) in places {
            out.insert((g.into(), r.into(), v.into(), kind.into(), ns.into()));
        }
    }
    out
}

fn diff(got: &BTreeSet<Grant>, want: &BTreeSet<Grant>) -> String {
    format!(
        "granted by the chart but not in api/src/rbac.rs: {:?}\nin api/src/rbac.rs but not granted: {:?}",
        got.difference(want).collect::<Vec<_>>(),
        want.difference(got).collect::<Vec<_>>()
    )
}

#[test]
fn operator_role_equals_the_operator_rules() {
    let objects = render(&[]);
    let got = grants(&objects, "flint-operator");
    let want = expected(rbac::OPERATOR, "flint-system", None, &[]);
    assert_eq!(got, want, "{}", diff(&got, &want));
}

#[test]
fn an_operator_told_the_function_namespaces_patches_pods_only_there() {
    let objects = render(&["--set", "operator.functionNamespaces={team-a,team-b}"]);
    let got = grants(&objects, "flint-operator");
    let want = expected(rbac::OPERATOR, "flint-system", None, &["team-a", "team-b"]);
    assert_eq!(got, want, "{}", diff(&got, &want));
    // Spelled out: patching pods is granted in those two namespaces and
    // nowhere else, reading them everywhere.
    let pods: BTreeSet<(String, String, String)> = got
        .iter()
        .filter(|(g, r, ..)| g.is_empty() && r == "pods")
        .map(|(_, _, v, kind, ns)| (v.clone(), kind.clone(), ns.clone()))
        .collect();
    let want: BTreeSet<(String, String, String)> = [
        ("list", "ClusterRole", ""),
        ("watch", "ClusterRole", ""),
        ("patch", "Role", "team-a"),
        ("patch", "Role", "team-b"),
    ]
    .into_iter()
    .map(|(v, k, n)| (v.into(), k.into(), n.into()))
    .collect();
    assert_eq!(pods, want);
}

#[test]
fn every_operator_rule_states_its_reason_next_to_it() {
    // Each rule of the operator's Roles is preceded by a comment (template
    // lines aside).
    let text =
        std::fs::read_to_string(repo().join("charts/flint/templates/operator-rbac.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut rules = 0;
    for (i, line) in lines.iter().enumerate() {
        if line.trim_start().starts_with("- apiGroups:") {
            rules += 1;
            let above = lines[..i]
                .iter()
                .rev()
                .find(|l| !l.trim_start().starts_with("{{"))
                .unwrap();
            assert!(
                above.trim_start().starts_with('#'),
                "rule at line {} has no reason above it",
                i + 1
            );
        }
    }
    assert!(rules >= rbac::OPERATOR.len(), "{rules} rules found");
}

#[test]
fn gateway_role_equals_the_gateway_rules() {
    let objects = render(&[]);
    let got = grants(&objects, "flint-gateway");
    let want = expected(rbac::GATEWAY, "flint-system", None, &[]);
    assert_eq!(got, want, "{}", diff(&got, &want));
}

#[test]
fn a_gateway_watching_one_namespace_gets_a_role_there_only() {
    let objects = render(&["--set", "gateway.watchNamespace=team-a"]);
    let got = grants(&objects, "flint-gateway");
    let want = expected(rbac::GATEWAY, "flint-system", Some("team-a"), &[]);
    assert_eq!(got, want, "{}", diff(&got, &want));
    // and the gateway is told to watch only that namespace
    let gateway = objects
        .iter()
        .find(|o| s(o, &["kind"]) == "Deployment" && s(o, &["metadata", "name"]) == "flint-gateway")
        .unwrap();
    let env = &gateway["spec"]["template"]["spec"]["containers"][0]["env"];
    assert!(
        env.as_sequence()
            .unwrap()
            .iter()
            .any(|e| s(e, &["name"]) == "FLINT_NAMESPACE" && s(e, &["value"]) == "team-a")
    );
}

#[test]
fn no_other_account_is_bound_and_no_role_uses_wildcards() {
    let objects = render(&[
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "monitoring.create=always",
    ]);
    for o in &objects {
        let kind = s(o, &["kind"]);
        if kind.ends_with("Binding") {
            for subject in o["subjects"].as_sequence().unwrap() {
                let name = s(subject, &["name"]);
                assert!(
                    name == "flint-operator" || name == "flint-gateway",
                    "{kind} binds {name}"
                );
            }
        }
        if kind == "Role" || kind == "ClusterRole" {
            for rule in o["rules"].as_sequence().unwrap() {
                for key in ["apiGroups", "resources", "verbs"] {
                    assert!(
                        !strings(rule, key).iter().any(|x| x.contains('*')),
                        "{rule:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn the_charts_crd_is_the_repositorys_crd() {
    let root = repo();
    let read = |p: &Path| std::fs::read(root.join(p)).unwrap();
    assert!(
        read(Path::new("charts/flint/crds/functions.flint.dev.yaml"))
            == read(Path::new("crds/functions.flint.dev.yaml")),
        "charts/flint/crds/functions.flint.dev.yaml differs from crds/functions.flint.dev.yaml; copy it: cp crds/functions.flint.dev.yaml charts/flint/crds/"
    );
}
