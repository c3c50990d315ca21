//! The checked-in CRD is exactly what `flint crd` prints, and it carries the
//! shape the API server needs: names, printer columns, status subresource,
//! schema bounds, and a CEL rule for every cross-field rule of the API.

use flint_api::crd::{CRD_FILE, function_crd, function_crd_yaml};

fn repo_file(path: &str) -> String {
    let full = format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

#[test]
fn checked_in_crd_has_not_drifted() {
    let generated = function_crd_yaml().expect("renders");
    if std::env::var_os("FLINT_UPDATE_CRD").is_some() {
        let full = format!("{}/../{CRD_FILE}", env!("CARGO_MANIFEST_DIR"));
        std::fs::write(&full, &generated).expect("writing the CRD");
    }
    let checked_in = repo_file(CRD_FILE);
    assert!(
        generated == checked_in,
        "{CRD_FILE} differs from the generated CRD; regenerate it with:\n    cargo run -q -- crd > {CRD_FILE}\n(or: FLINT_UPDATE_CRD=1 cargo test -p flint-api --test crd)"
    );
}

#[test]
fn names_columns_and_subresources() {
    let crd = function_crd();
    assert_eq!(crd.metadata.name.as_deref(), Some("functions.flint.dev"));
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(
        crd.spec.names.short_names.as_deref(),
        Some(&["fn".to_owned()][..])
    );
    assert_eq!(
        crd.spec.names.categories.as_deref(),
        Some(&["flint".to_owned()][..])
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    assert!(
        version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some()
    );
    let columns: Vec<_> = version
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(columns, ["URL", "Ready", "Replicas", "Latest", "Age"]);
}

/// Every CEL rule in the schema, as (location, rule).
fn cel_rules() -> Vec<(String, String)> {
    fn walk(path: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(rules) = map
                    .get("x-kubernetes-validations")
                    .and_then(|r| r.as_array())
                {
                    for r in rules {
                        out.push((
                            path.to_owned(),
                            r["rule"].as_str().unwrap_or_default().to_owned(),
                        ));
                    }
                }
                for (k, child) in map {
                    walk(&format!("{path}/{k}"), child, out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    walk(&format!("{path}/{i}"), child, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &flint_api::crd::function_schema().expect("schema"),
        &mut out,
    );
    out
}

#[test]
fn every_cross_field_rule_is_a_cel_rule() {
    let rules = cel_rules();
    let has = |needle: &str| rules.iter().any(|(_, r)| r.contains(needle));
    let expected = [
        (
            "traffic percents sum to 100",
            "self.traffic.map(t, t.percent).sum() == 100",
        ),
        (
            "exactly one of revision/latestRevision",
            "has(self.revision) != (has(self.latestRevision) && self.latestRevision)",
        ),
        ("tags unique", "u.tag == t.tag).size() == 1"),
        ("min <= max", "self.min <= self.max"),
        (
            "min <= initial <= max",
            "self.initial >= self.min && self.initial <= self.max",
        ),
        (
            "stable window range",
            "duration(self.stableWindow) >= duration('6s')",
        ),
        (
            "scale-down delay range",
            "duration(self.scaleDownDelay) <= duration('1h')",
        ),
        (
            "grace period range",
            "duration(self.scaleToZeroGracePeriod) >= duration('1s')",
        ),
        (
            "async max age range",
            "duration(self.maxAge) >= duration('1s')",
        ),
        ("reserved ports", "!(self.port in [8012, 8022, 9091])"),
        (
            "name length for revision names",
            "size(self.metadata.name) <= 57",
        ),
        ("name is a DNS label", "self.metadata.name.matches("),
        (
            "tagged host length",
            "size(t.tag) + size(self.metadata.name) <= 62",
        ),
        (
            "traffic revisions belong to the function",
            "t.revision.substring(0, size(self.metadata.name)) == self.metadata.name",
        ),
        (
            "volume source",
            "(has(self.secret) ? 1 : 0) + (has(self.configMap) ? 1 : 0)",
        ),
        (
            "probe handler",
            "(has(self.exec) ? 1 : 0) + (has(self.httpGet) ? 1 : 0)",
        ),
        ("probe success threshold", "self.successThreshold == 1"),
        (
            "pod label keys Flint sets",
            "!('flint.dev/revision' in self)",
        ),
        ("sidecar named app", "self.all(c, c.name != 'app')"),
        (
            "unique container names",
            "self.filter(d, d.name == c.name).size() == 1",
        ),
        (
            "init container and sidecar names apart",
            "self.sidecars.all(c, c.name != i.name)",
        ),
        ("sidecar off the port", "p.containerPort != self.port"),
        ("container image", "has(c.image) && size(c.image) > 0"),
        (
            "privileged escalation",
            "self.privileged && has(self.allowPrivilegeEscalation)",
        ),
        ("toleration Exists without value", "t.operator != 'Exists'"),
    ];
    for (what, needle) in expected {
        assert!(
            has(needle),
            "no CEL rule for {what} ({needle}); rules: {rules:#?}"
        );
    }
}

#[test]
fn single_field_bounds_are_in_the_schema() {
    let schema = flint_api::crd::function_schema().expect("schema");
    let spec = &schema["properties"]["spec"]["properties"];
    assert_eq!(spec["port"]["minimum"], 1.0);
    assert_eq!(spec["port"]["maximum"], 65535.0);
    assert_eq!(spec["timeoutSeconds"]["minimum"], 1.0);
    assert_eq!(spec["timeoutSeconds"]["maximum"], 3600.0);
    let scale = &spec["scale"]["properties"];
    assert_eq!(scale["max"]["minimum"], 1.0);
    assert_eq!(scale["target"]["minimum"], 1.0);
    assert_eq!(scale["targetUtilization"]["maximum"], 100.0);
    assert_eq!(
        scale["stableWindow"]["pattern"],
        flint_api::duration::DURATION_PATTERN
    );
    // Bounds that keep the CEL rules within the API server's cost budget.
    assert_eq!(spec["env"]["maxItems"], 256);
    assert_eq!(
        spec["env"]["items"]["properties"]["name"]["maxLength"],
        flint_api::crd::ENV_NAME_MAX_LENGTH
    );
    let traffic = &spec["traffic"]["items"]["properties"];
    assert_eq!(traffic["percent"]["maximum"], 100.0);
    assert_eq!(traffic["tag"]["pattern"], "^[a-z]([-a-z0-9]*[a-z0-9])?$");
    assert_eq!(
        spec["schedules"]["items"]["properties"]["cron"]["pattern"],
        flint_api::function::CRON_PATTERN
    );
    assert!(
        schema["properties"]["spec"]["required"]
            .as_array()
            .expect("required")
            .contains(&"image".into())
    );
}

/// `kubectl apply` (client-side) stores the whole object in an annotation,
/// and annotations are limited to 256 KiB: the CRD must stay below that to
/// install with a plain `kubectl apply -f`.
#[test]
fn crd_fits_a_client_side_apply() {
    let json = serde_json::to_string(&function_crd()).expect("serializes");
    assert!(
        json.len() < 256 * 1024,
        "the CRD is {} bytes of JSON; kubectl apply's annotation holds at most 262144",
        json.len()
    );
}

#[test]
fn timezone_is_one_of_the_scheduler_zones_in_sorted_order() {
    let schema = flint_api::crd::function_schema().expect("schema");
    let timezone =
        &schema["properties"]["spec"]["properties"]["schedules"]["items"]["properties"]["timezone"];
    assert_eq!(timezone["type"], "string");
    assert_eq!(timezone["default"], "UTC");
    let listed: Vec<&str> = timezone["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .map(|v| v.as_str().expect("a string"))
        .collect();
    let mut known: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    known.sort_unstable();
    assert_eq!(listed, known);
    assert!(
        listed.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
    for name in &listed {
        assert!(
            flint_api::validate::parse_timezone(name).is_ok(),
            "validate() refuses {name}, which the CRD lists"
        );
    }
    for absent in ["Mars/Olympus", "europe/paris", "utc", ""] {
        assert!(!listed.contains(&absent), "{absent}");
    }
}

/// The API server refuses unknown fields (kubectl's default strict field
/// validation) only where the schema does not preserve them: nothing in
/// `spec` may set `x-kubernetes-preserve-unknown-fields`, and every object
/// in it lists its properties or the schema of its map values.
#[test]
fn spec_does_not_preserve_unknown_fields() {
    fn walk(path: &str, schema: &serde_json::Value, out: &mut Vec<String>) {
        let Some(map) = schema.as_object() else {
            return;
        };
        if map.get("x-kubernetes-preserve-unknown-fields") == Some(&serde_json::Value::Bool(true)) {
            out.push(path.to_owned());
        }
        if let Some(properties) = map.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in properties {
                walk(&format!("{path}.{name}"), child, out);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = map.get(key) {
                walk(&format!("{path}[{key}]"), child, out);
            }
        }
    }
    let schema = flint_api::crd::function_schema().expect("schema");
    let spec = &schema["properties"]["spec"];
    assert_eq!(spec["type"], "object");
    assert!(spec["properties"]["image"].is_object());
    assert_eq!(spec.get("x-kubernetes-preserve-unknown-fields"), None);
    let mut preserving = Vec::new();
    walk("spec", spec, &mut preserving);
    assert_eq!(preserving, Vec::<String>::new());
}

/// The API server prices a CEL rule by the longest value each field it
/// reads may hold, and refuses the whole CRD when a rule (or all of them
/// together) costs more than its budget. A list of strings with a rule that
/// goes over its entries must bound both the list and each string, or the estimate
/// assumes strings as long as a whole request (`spec.domains` once did:
/// "estimated rule cost exceeds budget by factor of 24.2x").
#[test]
fn string_lists_with_rules_bound_their_entries() {
    fn walk(path: &str, schema: &serde_json::Value, out: &mut Vec<String>) {
        let Some(map) = schema.as_object() else {
            return;
        };
        let items = map.get("items").unwrap_or(&serde_json::Value::Null);
        let over_entries = map
            .get("x-kubernetes-validations")
            .and_then(|r| r.as_array())
            .into_iter()
            .flatten()
            .filter_map(|r| r["rule"].as_str())
            .any(|rule| {
                [".all(", ".exists(", ".filter(", ".map("]
                    .iter()
                    .any(|m| rule.contains(m))
            });
        if over_entries
            && items["type"] == "string"
            && items.get("enum").is_none()
            && (items.get("maxLength").is_none() || map.get("maxItems").is_none())
        {
            out.push(path.to_owned());
        }
        if let Some(properties) = map.get("properties").and_then(|p| p.as_object()) {
            for (name, child) in properties {
                walk(&format!("{path}.{name}"), child, out);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = map.get(key) {
                walk(&format!("{path}[{key}]"), child, out);
            }
        }
    }
    let schema = flint_api::crd::function_schema().expect("schema");
    let mut unbounded = Vec::new();
    walk("", &schema, &mut unbounded);
    assert_eq!(unbounded, Vec::<String>::new());
    let domains = &schema["properties"]["spec"]["properties"]["domains"];
    assert_eq!(
        domains["items"]["maxLength"].as_u64(),
        Some(flint_api::domains::MAX_DOMAIN_LEN as u64)
    );
}
