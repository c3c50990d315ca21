//! The Kubernetes API calls of the operator and of the gateway, derived from
//! their sources, must equal the rules listed once in `flint_api::rbac` (which
//! the chart's Roles are tested against): a call without a rule, or a rule no
//! call needs, fails here.
//!
//! Why a source scan: every call goes through a typed `kube::Api<K>`, so the
//! resource is in the type and the verb is the method name. The scan finds
//! each `Api<K>` binding (`name: Api<K>`, `name: &Api<K>`, a `let (a, b):
//! (Api<A>, Api<B>)` tuple, or an inline `Api::<K>::all(..)` given to a
//! controller or watcher), then the methods called on that binding. Any other
//! use of `Api<..>` (a return type, a generic) is reported as unrecognised,
//! so a new call shape fails the test instead of slipping past it. Calls the
//! kube runtime makes for us are derived from their entry points: a
//! `Controller`/`watcher` lists and watches, `finalizer(&api, ..)` patches,
//! a `Recorder` creates and patches `events.k8s.io` Events, and an owner
//! reference with `block_owner_deletion: Some(true)` needs `update` on
//! `functions/finalizers`. Test modules (`#[cfg(test)] mod .. { }`,
//! `*_tests.rs`) and comments are not scanned.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use flint_api::rbac::{self, Rule};
use kube::Resource;

/// (api group, resource or resource/subresource, verb).
type Perm = (String, String, String);

/// Group and plural of the resource types the scan may meet.
fn resource_of(type_name: &str) -> Option<(String, String)> {
    fn of<K: Resource<DynamicType = ()>>() -> Option<(String, String)> {
        Some((K::group(&()).into_owned(), K::plural(&()).into_owned()))
    }
    use k8s_openapi::api::{apps, batch, coordination, core, discovery, events, policy};
    match type_name {
        "Function" => of::<flint_api::Function>(),
        "Deployment" => of::<apps::v1::Deployment>(),
        "ReplicaSet" => of::<apps::v1::ReplicaSet>(),
        "StatefulSet" => of::<apps::v1::StatefulSet>(),
        "DaemonSet" => of::<apps::v1::DaemonSet>(),
        "Job" => of::<batch::v1::Job>(),
        "CronJob" => of::<batch::v1::CronJob>(),
        "Lease" => of::<coordination::v1::Lease>(),
        "Pod" => of::<core::v1::Pod>(),
        "Service" => of::<core::v1::Service>(),
        "ConfigMap" => of::<core::v1::ConfigMap>(),
        "Secret" => of::<core::v1::Secret>(),
        "Namespace" => of::<core::v1::Namespace>(),
        "Node" => of::<core::v1::Node>(),
        "Endpoints" => of::<core::v1::Endpoints>(),
        "ServiceAccount" => of::<core::v1::ServiceAccount>(),
        "EndpointSlice" => of::<discovery::v1::EndpointSlice>(),
        "Event" => of::<events::v1::Event>(),
        "PodDisruptionBudget" => of::<policy::v1::PodDisruptionBudget>(),
        _ => None,
    }
}

/// What a method of `kube::Api` asks the API server for: (subresource, verbs).
fn method_verbs(method: &str) -> Option<(&'static str, &'static [&'static str])> {
    Some(match method {
        "get" | "get_opt" | "get_metadata" | "get_metadata_opt" => ("", &["get"]),
        "list" | "list_metadata" => ("", &["list"]),
        "watch" | "watch_metadata" => ("", &["watch"]),
        "create" => ("", &["create"]),
        "replace" => ("", &["update"]),
        "patch" | "patch_metadata" => ("", &["patch"]),
        "delete" => ("", &["delete"]),
        "delete_collection" => ("", &["deletecollection"]),
        "entry" => ("", &["get", "create", "update"]),
        "get_status" => ("status", &["get"]),
        "patch_status" => ("status", &["patch"]),
        "replace_status" => ("status", &["update"]),
        "get_scale" => ("scale", &["get"]),
        "patch_scale" => ("scale", &["patch"]),
        "replace_scale" => ("scale", &["update"]),
        "evict" => ("eviction", &["create"]),
        "logs" | "log_stream" => ("log", &["get"]),
        "exec" => ("exec", &["create"]),
        "attach" => ("attach", &["create"]),
        _ => return None,
    })
}

/// Whether the arguments of the call starting at `tail` (`(…)`) apply a
/// patch server-side (`Patch::Apply`, or a value named like one).
fn applies(tail: &str) -> bool {
    let mut depth = 0usize;
    for (i, c) in tail.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    let args = &tail[..i];
                    return args.contains("Patch::Apply");
                }
            }
            _ => {}
        }
    }
    false
}

/// The permissions a body of source needs, or the uses of `Api` the scan
/// does not understand.
#[derive(Debug, Default)]
struct Scan {
    needs: BTreeMap<Perm, Vec<String>>,
    unrecognised: Vec<String>,
}

impl Scan {
    fn need(&mut self, group: &str, resource: &str, verb: &str, at: String) {
        self.needs
            .entry((group.to_owned(), resource.to_owned(), verb.to_owned()))
            .or_default()
            .push(at);
    }

    fn need_type(&mut self, ty: &str, sub: &str, verbs: &[&str], at: &str) {
        match resource_of(ty) {
            Some((group, plural)) => {
                let resource = if sub.is_empty() {
                    plural
                } else {
                    format!("{plural}/{sub}")
                };
                for verb in verbs {
                    self.need(&group, &resource, verb, at.to_owned());
                }
            }
            None => self.unrecognised.push(format!(
                "{at}: Api<{ty}>: unknown resource type; add it to resource_of()"
            )),
        }
    }

    /// Scans one file's source.
    fn file(&mut self, name: &str, source: &str) {
        let code = strip_tests(&strip_comments(source));
        let line_of = |pos: usize| code[..pos].matches('\n').count() + 1;
        let mut bindings: Vec<(String, String)> = Vec::new();

        for pos in find_all(&code, "Api") {
            let before = code[..pos].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[pos + 3..];
            let (ty, _) = if let Some(r) = rest.strip_prefix("::<") {
                match type_arg(r) {
                    Some(x) => x,
                    None => continue,
                }
            } else if let Some(r) = rest.strip_prefix('<') {
                match type_arg(r) {
                    Some(x) => x,
                    None => continue,
                }
            } else {
                continue; // `Api::namespaced(..)`, `use kube::Api`: the type is elsewhere
            };
            let at = format!("{name}:{}", line_of(pos));
            let mut lead = &code[..pos];
            // A path to the type: `kube::Api<K>`, `kube::api::Api<K>`.
            while let Some(l) = lead.strip_suffix("::") {
                lead = l.trim_end_matches(|c: char| c.is_alphanumeric() || c == '_');
            }
            let lead = lead.trim_end();
            let lead = lead.strip_suffix('&').unwrap_or(lead).trim_end();
            let lead = lead.strip_suffix("mut").unwrap_or(lead).trim_end();
            let inline = rest.starts_with("::<");
            if inline
                && ["Controller::new(", ".owns(", ".watches(", "watcher("]
                    .iter()
                    .any(|p| lead.ends_with(p))
            {
                // `Api::<K>::all(..)` handed to the kube runtime: list and watch.
                self.need_type(&ty, "", &["list", "watch"], &at);
            } else if let Some(ident) = lead.strip_suffix(':').and_then(last_ident) {
                bindings.push((ident, ty));
            } else if let Some(ident) = lead
                .strip_suffix('=')
                .map(str::trim_end)
                .and_then(|l| last_ident(l).filter(|_| inline && l.contains("let ")))
            {
                bindings.push((ident, ty));
            } else if let Some(names) = tuple_binding(lead) {
                // `let (a, b): (Api<A>, Api<B>)`: this is element `index`.
                let index = lead
                    .rsplit_once(": (")
                    .map_or(0, |(_, t)| t.matches("Api").count());
                match names.get(index) {
                    Some(ident) => bindings.push((ident.clone(), ty)),
                    None => self
                        .unrecognised
                        .push(format!("{at}: tuple binding of Api<{ty}> not understood")),
                }
            } else {
                self.unrecognised.push(format!(
                    "{at}: use of Api<{ty}> not understood by the RBAC scan (bind it as `name: Api<{ty}>`, or extend operator/tests/rbac_calls.rs)"
                ));
            }
        }

        for (ident, ty) in &bindings {
            for pos in find_all(&code, ident) {
                let before = code[..pos].chars().next_back();
                if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    continue;
                }
                let at = format!("{name}:{}", line_of(pos));
                let rest = code[pos + ident.len()..].trim_start();
                if let Some(call) = rest.strip_prefix('.') {
                    let method: String = call
                        .trim_start()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    let tail = call.trim_start()[method.len()..].trim_start();
                    let called = tail.starts_with('(') || tail.starts_with("::<");
                    if let Some((sub, verbs)) = method_verbs(&method).filter(|_| called) {
                        self.need_type(ty, sub, verbs, &at);
                        // Server-side apply creates the object when it is
                        // missing, which RBAC checks as `create`.
                        if method == "patch" && applies(tail) {
                            self.need_type(ty, sub, &["create"], &at);
                        }
                    }
                }
                let lead = code[..pos].trim_end();
                let lead = lead.strip_suffix('&').unwrap_or(lead).trim_end();
                if lead.ends_with("watcher(") || lead.ends_with("Controller::new(") {
                    self.need_type(ty, "", &["list", "watch"], &at);
                }
                if lead.ends_with("finalizer(") {
                    self.need_type(ty, "", &["patch"], &at);
                }
            }
        }

        for pos in find_all(&code, "Recorder::new(") {
            let at = format!("{name}:{}", line_of(pos));
            self.need_type("Event", "", &["create", "patch"], &at);
        }
        for pos in find_all(&code, "block_owner_deletion: Some(true)") {
            let at = format!("{name}:{}", line_of(pos));
            self.need_type("Function", "finalizers", &["update"], &at);
        }
    }

    /// Scans every `.rs` file under `dir` except test files.
    fn dir(&mut self, root: &Path, dir: &Path) {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                self.dir(root, &path);
            } else if file.ends_with(".rs") && !file.ends_with("_tests.rs") && file != "tests.rs" {
                let source = std::fs::read_to_string(&path).unwrap();
                let name = path.strip_prefix(root).unwrap().display().to_string();
                self.file(&name, &source);
            }
        }
    }

    /// Differences with the listed rules: (needed but not listed, listed but
    /// not needed).
    fn compare(&self, rules: &[Rule]) -> (Vec<String>, Vec<String>) {
        let listed: BTreeSet<Perm> = rbac::permissions(rules)
            .into_iter()
            .map(|(g, r, v, _)| (g.to_owned(), r.to_owned(), v.to_owned()))
            .collect();
        let missing = self
            .needs
            .iter()
            .filter(|(p, _)| !listed.contains(*p))
            .map(|((g, r, v), at)| format!("{v} {r} (group {g:?}) used at {}", at.join(", ")))
            .collect();
        let unused = listed
            .iter()
            .filter(|p| !self.needs.contains_key(*p))
            .map(|(g, r, v)| format!("{v} {r} (group {g:?})"))
            .collect();
        (missing, unused)
    }
}

fn find_all(code: &str, needle: &str) -> Vec<usize> {
    code.match_indices(needle).map(|(i, _)| i).collect()
}

/// The type argument of `Api<..>` (its last path segment) and the text after `>`.
fn type_arg(r: &str) -> Option<(String, &str)> {
    let end = r.find('>')?;
    let ty = r[..end].trim();
    let ty = ty.rsplit("::").next()?.trim().to_owned();
    if ty.is_empty() || !ty.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return None;
    }
    Some((ty, &r[end + 1..]))
}

/// The identifier a text ends with (`let mut api` → `api`, `self.api` → `api`).
fn last_ident(text: &str) -> Option<String> {
    let ident: String = text
        .trim_end()
        .chars()
        .rev()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    (!ident.is_empty() && !ident.starts_with(|c: char| c.is_ascii_digit())).then_some(ident)
}

/// For a text ending inside `let (a, b): (`..., the bound names `[a, b]`.
fn tuple_binding(lead: &str) -> Option<Vec<String>> {
    let (head, types) = lead.rsplit_once(": (")?;
    if types.contains(';') || types.contains('{') {
        return None;
    }
    let (_, names) = head.rsplit_once("let (")?;
    let names = names.strip_suffix(')')?;
    Some(
        names
            .split(',')
            .map(|n| n.trim().trim_start_matches("mut ").to_owned())
            .collect(),
    )
}

/// Removes `//` comments (doc comments included) and `/* */` blocks, and
/// blanks the contents of string literals, keeping line breaks.
fn strip_comments(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    let b = source.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'"' {
            let end = string_end(b, i);
            out.push('"');
            out.extend(source[i + 1..end].chars().map(|c| {
                if c == '\n' || c == '"' || c == '#' {
                    c
                } else {
                    ' '
                }
            }));
            i = end;
        } else if source[i..].starts_with("//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if source[i..].starts_with("/*") {
            let end = source[i..].find("*/").map_or(b.len(), |e| i + e + 2);
            out.extend(source[i..end].chars().filter(|c| *c == '\n'));
            i = end;
        } else {
            let c = source[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Index just past the string literal starting at `start` (a `"`, possibly
/// preceded by `r#`).
fn string_end(b: &[u8], start: usize) -> usize {
    let hashes = b[..start].iter().rev().take_while(|c| **c == b'#').count();
    let raw = start > hashes && b[start - hashes - 1] == b'r';
    let mut i = start + 1;
    while i < b.len() {
        if !raw && b[i] == b'\\' {
            i += 2;
            continue;
        }
        if b[i] == b'"'
            && b[i + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == b'#')
                .count()
                == hashes
        {
            return i + 1 + if raw { hashes } else { 0 };
        }
        i += 1;
    }
    b.len()
}

/// Removes `#[cfg(test)]` items (test modules and functions): test code talks
/// to mocks, not to the API server.
fn strip_tests(code: &str) -> String {
    let mut out = code.to_owned();
    while let Some(start) = out.find("#[cfg(test)]") {
        let b = out.as_bytes();
        let mut i = start;
        // The item ends at `;` (e.g. `mod tests;` with #[path]) or its block.
        let mut depth = 0usize;
        let mut end = out.len();
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = string_end(b, i);
                    continue;
                }
                b';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                _ => {}
            }
            i += 1;
        }
        let removed_lines = out[start..end].matches('\n').count();
        out.replace_range(start..end, &"\n".repeat(removed_lines));
    }
    out
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn scan_dir(rel: &str) -> Scan {
    let root = repo();
    let mut scan = Scan::default();
    scan.dir(&root, &root.join(rel));
    scan
}

fn assert_matches(scan: &Scan, rules: &[Rule], who: &str) {
    assert!(
        scan.unrecognised.is_empty(),
        "{who}: uses of kube::Api the RBAC scan does not understand:\n  {}",
        scan.unrecognised.join("\n  ")
    );
    let (missing, unused) = scan.compare(rules);
    assert!(
        missing.is_empty() && unused.is_empty(),
        "{who}'s API calls and flint_api::rbac disagree (update api/src/rbac.rs and the chart's Roles together)\n\
         needed but not in the rules:\n  {}\nin the rules but not needed:\n  {}",
        missing.join("\n  "),
        unused.join("\n  ")
    );
}

#[test]
fn operator_calls_equal_the_operator_rules() {
    let scan = scan_dir("operator/src");
    // The scan is not vacuous: it finds the reconciler's and the elector's calls.
    assert!(scan.needs.len() >= 10, "found only {:?}", scan.needs.keys());
    assert_matches(&scan, rbac::OPERATOR, "flint operator");
}

#[test]
fn gateway_calls_equal_the_gateway_rules() {
    let scan = scan_dir("runtime/src");
    assert!(!scan.needs.is_empty());
    assert_matches(&scan, rbac::GATEWAY, "flint gateway");
}

fn perms(scan: &Scan) -> Vec<String> {
    scan.needs
        .keys()
        .map(|(g, r, v)| format!("{g}/{r}:{v}"))
        .collect()
}

#[test]
fn a_new_call_without_a_rule_fails_the_comparison() {
    let mut scan = scan_dir("operator/src");
    scan.file(
        "added.rs",
        "async fn f(c: Client) { let s: Api<Node> = Api::all(c);\n s.get(\"a\").await; }",
    );
    let (missing, unused) = scan.compare(rbac::OPERATOR);
    assert_eq!(missing, vec![r#"get nodes (group "") used at added.rs:2"#]);
    assert!(unused.is_empty());
}

#[test]
fn a_rule_no_code_needs_fails_the_comparison() {
    let scan = scan_dir("runtime/src");
    let mut rules = rbac::GATEWAY.to_vec();
    rules.push(Rule {
        api_group: "",
        resource: "configmaps",
        verbs: &["get"],
        scope: rbac::Scope::Cluster,
        why: "",
    });
    let (missing, unused) = scan.compare(&rules);
    assert!(missing.is_empty());
    assert_eq!(unused, vec![r#"get configmaps (group "")"#]);
}

#[test]
fn bindings_chains_tuples_and_runtime_entry_points_are_read() {
    let mut scan = Scan::default();
    scan.file(
        "a.rs",
        r#"
        // api.delete("x") in a comment does not count
        struct E { api: kube::api::Api<Lease> }
        fn g(deployments: &Api<Deployment>) {}
        async fn f(&self, client: Client) {
            self.api.get_opt("l").await;
            deployments
                .patch_scale("d", &pp, &p).await;
            let (functions, slices): (Api<Function>, Api<EndpointSlice>) = (Api::all(c), Api::all(c));
            watcher(slices, cfg);
            finalizer(&functions, "f", obj, cb).await;
            Controller::new(Api::<Pod>::all(client), cfg);
            let r = Recorder::new(client, reporter);
            let s = "slices.delete(";
        }
        #[cfg(test)]
        mod tests { fn t() { let x: Api<Secret> = todo(); x.delete("a"); } }
        "#,
    );
    assert!(scan.unrecognised.is_empty(), "{:?}", scan.unrecognised);
    assert_eq!(
        perms(&scan),
        vec![
            "/pods:list",
            "/pods:watch",
            "apps/deployments/scale:patch",
            "coordination.k8s.io/leases:get",
            "discovery.k8s.io/endpointslices:list",
            "discovery.k8s.io/endpointslices:watch",
            "events.k8s.io/events:create",
            "events.k8s.io/events:patch",
            "flint.dev/functions:patch",
        ]
    );
}

#[test]
fn unknown_shapes_and_types_are_reported_not_ignored() {
    let mut scan = Scan::default();
    scan.file(
        "b.rs",
        "fn make(c: Client) -> Api<Secret> { Api::all(c) }\nfn h(x: Api<Widget>) { x.list(&lp); }",
    );
    assert_eq!(
        scan.unrecognised,
        vec![
            "b.rs:1: use of Api<Secret> not understood by the RBAC scan (bind it as `name: Api<Secret>`, or extend operator/tests/rbac_calls.rs)".to_owned(),
            "b.rs:2: Api<Widget>: unknown resource type; add it to resource_of()".to_owned(),
        ]
    );
}
