//! Bad manifests are refused with the field at fault named, by `flint`'s own
//! parser and validator and — for everything that parses — by the CRD's
//! schema and CEL rules too, evaluated here the way the API server would.

use flint_api::{Function, ManifestError, crd, parse_functions};
use kube::core::cel::Validator;

const HEAD: &str = "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: hello\n  namespace: default\n";

/// A Function manifest whose spec is `spec` (indented YAML under `spec:`).
fn manifest(spec: &str) -> String {
    format!("{HEAD}spec:\n  image: registry.example/hello:1\n{spec}")
}

/// A JSON pointer (`/spec/schedules/0/timezone`) as the API server's field
/// path (`spec.schedules[0].timezone`).
fn field_path(pointer: &str) -> String {
    let mut path = String::new();
    for part in pointer.split('/').filter(|p| !p.is_empty()) {
        if part.bytes().all(|b| b.is_ascii_digit()) {
            path.push_str(&format!("[{part}]"));
        } else {
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(part);
        }
    }
    path
}

/// What the API server would say: `Err` with each refusal as (field path,
/// message) when the schema bounds or a CEL rule refuse the object.
fn cluster_verdict(function: &Function) -> Result<(), Vec<(String, String)>> {
    let schema = crd::function_schema().expect("CRD has a schema");
    let object = serde_json::to_value(function).expect("serializes");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    let bounds: Vec<(String, String)> = validator
        .iter_errors(&object)
        .map(|e| (field_path(&e.instance_path.to_string()), e.to_string()))
        .collect();
    if !bounds.is_empty() {
        return Err(bounds);
    }
    Validator::new()
        .validate(&schema, &object, None)
        .map_err(|errs| {
            errs.as_slice()
                .iter()
                .map(|e| (e.field_path.clone(), e.message.clone()))
                .collect()
        })
}

/// A spec that parses but breaks a rule (api/tests/invalid_specs.yaml,
/// shared with the end-to-end tests against a real API server).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct InvalidSpec {
    /// YAML under `spec:` (besides the image).
    spec: String,
    /// Field path `validate()` names.
    path: String,
    /// Words its message must contain.
    words: String,
    /// Field path the API server names, when not `path`.
    api_path: Option<String>,
}

/// `spec` indented to sit under `spec:`.
fn indent(spec: &str) -> String {
    spec.lines().map(|l| format!("  {l}\n")).collect()
}

fn invalid_specs() -> Vec<InvalidSpec> {
    serde_yaml::from_str(include_str!("invalid_specs.yaml")).expect("invalid_specs.yaml parses")
}

#[test]
fn invalid_specs_name_the_field_and_are_refused_by_the_crd_too() {
    let cases = invalid_specs();
    assert!(cases.len() >= 20);
    for case in &cases {
        let (spec, path, words) = (&case.spec, &case.path, &case.words);
        let text = manifest(&indent(spec));
        let err = parse_functions(&text).expect_err(&format!("accepted: {spec}"));
        let ManifestError::Invalid { name, errors } = &err else {
            panic!("{spec}: expected a validation error, got {err}");
        };
        assert_eq!(name, "hello");
        let hit = errors.errors().iter().find(|e| e.path == *path);
        let hit = hit.unwrap_or_else(|| panic!("{spec}: no error at {path}: {err}"));
        assert!(
            hit.message.contains(words),
            "{spec}: {path}: {:?} lacks {words:?}",
            hit.message
        );
        assert!(err.to_string().contains(&format!("{path}: ")), "{err}");

        // The same object must be refused by the API server (schema or CEL),
        // at the same field.
        let function: Function = serde_yaml::from_str(&text).expect("parses as a Function");
        let refusals = cluster_verdict(&function)
            .err()
            .unwrap_or_else(|| panic!("{spec}: the CRD would accept what validate() refuses"));
        let at = case.api_path.as_deref().unwrap_or(path);
        assert!(
            refusals.iter().any(|(p, _)| p == at),
            "{spec}: the CRD refuses at other fields than {at}: {refusals:?}"
        );
    }
}

/// Rules a structural schema cannot state (map keys) or that a CEL rule
/// could not afford: `validate()` refuses these, naming the field; on a
/// cluster the API server accepts the Function and refuses the revision's
/// Deployment instead.
#[test]
fn pod_template_rules_beyond_the_schema_name_the_field() {
    let cases = [
        (
            "  podLabels: { \"bad key\": x }\n",
            "spec.podLabels",
            "key \"bad key\" must be a label key",
        ),
        (
            "  podAnnotations: { \"Example.com/x\": y }\n",
            "spec.podAnnotations",
            "key \"Example.com/x\" must be a label key",
        ),
        (
            "  nodeSelector: { \"-zone\": a }\n",
            "spec.nodeSelector",
            "key \"-zone\" must be a label key",
        ),
        (
            "  sidecars:\n    - { name: shipper, image: s:1, volumeMounts: [{ name: logs, mountPath: /logs }] }\n",
            "spec.sidecars[0].volumeMounts[0].name",
            "\"logs\" is not a volume of spec.volumes",
        ),
    ];
    for (spec, path, words) in cases {
        let err = parse_functions(&manifest(spec)).expect_err(spec);
        let ManifestError::Invalid { errors, .. } = &err else {
            panic!("{spec}: expected a validation error, got {err}");
        };
        let hit = errors.errors().iter().find(|e| e.path == path);
        let hit = hit.unwrap_or_else(|| panic!("{spec}: no error at {path}: {err}"));
        assert!(hit.message.contains(words), "{spec}: {:?}", hit.message);
    }
}

#[test]
fn every_pod_template_field_passes_everywhere() {
    let text = manifest(include_str!("pod_template_spec.yaml"));
    let functions = parse_functions(&text).expect("valid");
    assert_eq!(cluster_verdict(&functions[0]), Ok(()));
    let spec = &functions[0].spec;
    assert_eq!(spec.sidecars.len(), 1);
    assert_eq!(spec.init_containers.len(), 1);
    assert_eq!(
        spec.image_pull_policy,
        Some(flint_api::pod::ImagePullPolicy::IfNotPresent)
    );
    assert_eq!(spec.volumes.len(), 5);
}

#[test]
fn invalid_names_are_refused_with_the_reason() {
    let long = "a".repeat(58);
    let cases = [
        (format!("apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {long}\nspec:\n  image: x\n"), "at most 57"),
        ("apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: Hello_World\nspec:\n  image: x\n".to_owned(), "DNS label"),
        ("apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: 9lives\nspec:\n  image: x\n".to_owned(), "DNS label"),
    ];
    for (text, words) in cases {
        let err = parse_functions(&text).expect_err("accepted");
        assert_eq!(err.paths(), vec!["metadata.name".to_owned()], "{err}");
        assert!(err.to_string().contains(words), "{err}");
        let function: Function = serde_yaml::from_str(&text).expect("parses");
        assert!(
            cluster_verdict(&function).is_err(),
            "CRD accepts {:?}",
            function.metadata.name
        );
    }
    let tag = "t".repeat(10);
    let name = "n".repeat(57);
    let text = format!(
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  image: x\n  traffic:\n    - {{ latestRevision: true, percent: 100, tag: {tag} }}\n"
    );
    let err = parse_functions(&text).expect_err("accepted");
    assert_eq!(err.paths(), vec!["spec.traffic[0].tag".to_owned()]);
    let function: Function = serde_yaml::from_str(&text).expect("parses");
    assert!(cluster_verdict(&function).is_err());
}

/// YAML that is not a valid Function: (text, error variant check, words the message must contain).
#[test]
fn yaml_that_is_not_a_function_gets_an_error_naming_the_line_or_field() {
    let cases: &[(&str, &str)] = &[
        (
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "kind: \"ConfigMap\" is not a Function",
        ),
        (
            "apiVersion: flint.dev/v1\nkind: Function\nmetadata: {name: x}\nspec: {image: x}\n",
            "apiVersion: \"flint.dev/v1\" is not served",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec: {image: x, scale: {minimum: 1}}\n",
            "spec.scale.minimum: unknown field",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec: {image: x}\nextra: 1\n",
            "extra: unknown field",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec: {image: x, env: [{name: A, valu: b}]}\n",
            "spec.env[0].valu: unknown field; did you mean `value`?",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec:\n  image: x\n  port: http\n",
            "spec.port: invalid type: string \"http\"",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec:\n  image: x\n  port: 70000\n",
            "spec.port: invalid value",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec:\n  image: x\n  scale:\n    stableWindow: 1 minute\n",
            "spec.scale.stableWindow: invalid duration",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec:\n  image: x\n  scale:\n    metric: latency\n",
            "spec.scale.metric: unknown variant `latency`",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec: {}\n",
            "spec: missing field `image`",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\n",
            "missing field `spec`",
        ),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x\nspec: {}\n",
            "line 3",
        ),
        ("- just\n- a list\n", "not a Kubernetes object"),
        (
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: x}\nspec: {image: x, imagePullPolicy: Sometimes}\n",
            "spec.imagePullPolicy: unknown variant `Sometimes`",
        ),
        ("kind: Function\n", "apiVersion: \"\" is not served"),
    ];
    for (text, words) in cases {
        let err = parse_functions(text).expect_err(text);
        assert!(
            err.to_string().contains(words),
            "{text}\n=> {err}\n(wanted {words:?})"
        );
    }
    // Type errors also say where.
    let err = parse_functions(cases[5].0).expect_err("bad port");
    assert!(err.to_string().contains("line 6"), "{err}");
}

/// A typo in a field's name is reported as an unknown field, with the
/// closest known name at that place when it is close enough, and before the
/// missing required field the typo also causes. (text after `kind`, exact
/// message.)
#[test]
fn typos_are_unknown_fields_with_a_suggestion_reported_before_missing_ones() {
    let cases: &[(&str, &str)] = &[
        (
            "metadata: {name: x}\nspec: {imagee: x}\n",
            "spec.imagee: unknown field; did you mean `image`?",
        ),
        (
            "metadata: {name: x}\nspec: {imgae: x}\n",
            "spec.imgae: unknown field; did you mean `image`?",
        ),
        (
            "metadata: {name: x}\nspc: {image: x}\n",
            "spc: unknown field; did you mean `spec`?",
        ),
        (
            "metadata: {nmae: x}\nspec: {image: x}\n",
            "metadata.nmae: unknown field; did you mean `name`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, scale: {minn: 1}}\n",
            "spec.scale.minn: unknown field; did you mean `min`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, scale: {minimum: 1}}\n",
            "spec.scale.minimum: unknown field",
        ),
        (
            "metadata: {name: x}\nspec:\n  image: x\n  traffic:\n    - {latestRevision: true, percen: 100}\n",
            "spec.traffic[0].percen: unknown field; did you mean `percent`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, env: [{name: A, valu: b}]}\n",
            "spec.env[0].valu: unknown field; did you mean `value`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, env: [{nme: A, value: b}]}\n",
            "spec.env[0].nme: unknown field; did you mean `name`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, env: [{name: A, valueFrom: {secretKeyRef: {nme: s, key: k}}}]}\n",
            "spec.env[0].valueFrom.secretKeyRef.nme: unknown field; did you mean `name`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, readinessProbe: {httpGet: {pth: /ready, port: 8080}}}\n",
            "spec.readinessProbe.httpGet.pth: unknown field; did you mean `path`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, sidecars: [{name: s, imag: s:1}]}\n",
            "spec.sidecars[0].imag: unknown field; did you mean `image`?",
        ),
        (
            "metadata: {name: x}\nspec: {image: x, workingdir: /srv}\n",
            "spec.workingdir: unknown field; did you mean `workingDir`?",
        ),
        (
            "metadata: {name: x}\nspec: {imagee: x, portt: 8080, colour: blue}\n",
            "spec.imagee: unknown field; did you mean `image`?; spec.portt: unknown field; did you mean `port`?; spec.colour: unknown field",
        ),
    ];
    for (rest, message) in cases {
        let text = format!("apiVersion: flint.dev/v1alpha1\nkind: Function\n{rest}");
        let err = parse_functions(&text).expect_err(rest);
        assert!(
            matches!(err, ManifestError::UnknownFields { .. }),
            "{rest}: {err:?}"
        );
        assert_eq!(err.to_string(), format!("document 1: {message}"), "{rest}");
    }
    // Keys of maps (labels, selectors, resources) are not field names.
    let text = manifest("  podLabels: { imagee: x }\n  nodeSelector: { zone: a }\n");
    parse_functions(&text).expect("map keys are free");
    // Each document is reported in order: a typo in the second does not
    // hide a bad value in the first.
    let text = format!(
        "{}---\n{}",
        manifest("  port: 0\n"),
        manifest("  scale: { minn: 1 }\n")
    );
    let err = parse_functions(&text).expect_err("bad port");
    assert!(err.to_string().contains("spec.port"), "{err}");
}

#[test]
fn multi_document_files_skip_empty_documents_and_report_the_bad_one() {
    let good = manifest("");
    let text = format!(
        "---\n{good}---\n---\n{}",
        good.replace("name: hello", "name: world")
    );
    let functions = parse_functions(&text).expect("valid");
    let names: Vec<_> = functions
        .iter()
        .map(|f| f.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(names, ["hello", "world"]);

    let text = format!("{good}---\napiVersion: v1\nkind: Service\nmetadata: {{name: s}}\n");
    let err = parse_functions(&text).expect_err("service");
    assert!(
        err.to_string().starts_with("document 2: kind: \"Service\""),
        "{err}"
    );
}

#[test]
fn defaults_are_filled_in() {
    let functions = parse_functions(&manifest("")).expect("valid");
    let spec = &functions[0].spec;
    assert_eq!(spec.port, 8080);
    assert_eq!(spec.timeout_seconds, 300);
    assert_eq!(spec.concurrency, 0);
    assert_eq!(spec.revision_history_limit, 5);
    assert_eq!(
        (spec.scale.min, spec.scale.initial, spec.scale.max),
        (0, 1, 100)
    );
    assert_eq!(spec.scale.target, 100);
    assert_eq!(spec.scale.target_utilization, 70);
    assert_eq!(spec.scale.stable_window.to_string(), "1m");
    assert_eq!(spec.scale.panic_window().to_string(), "6s");
    assert_eq!(spec.scale.scale_to_zero_grace_period.to_string(), "30s");
    assert_eq!(
        (spec.async_.max_retries, spec.async_.max_in_flight),
        (3, 10)
    );
    assert!((spec.scale.effective_target() - 70.0).abs() < 1e-9);
}

#[test]
fn a_full_valid_manifest_passes_everywhere() {
    let text = manifest(concat!(
        "  command: [python3, handler.py]\n",
        "  env: [{ name: GREETING, value: hi }]\n",
        "  port: 8081\n",
        "  concurrency: 10\n",
        "  volumes:\n    - { name: cfg, mountPath: /etc/cfg, configMap: { name: cfg } }\n",
        "  scale: { min: 1, max: 20, initial: 2, metric: rps, target: 50, stableWindow: 30s, keepAlive: adaptive }\n",
        "  traffic:\n    - { latestRevision: true, percent: 90 }\n    - { revision: hello-00001, percent: 10, tag: previous }\n",
        "  schedules:\n    - { cron: \"*/5 * * * *\", timezone: Europe/Berlin, path: /tick }\n",
    ));
    let functions = parse_functions(&text).expect("valid");
    assert_eq!(cluster_verdict(&functions[0]), Ok(()));
    assert_eq!(
        cluster_verdict(&parse_functions(&manifest("")).expect("valid")[0]),
        Ok(())
    );
}

#[test]
fn known_time_zones_pass_everywhere() {
    for zone in [
        "UTC",
        "Europe/Paris",
        "America/Argentina/Buenos_Aires",
        "Etc/GMT+5",
    ] {
        let text = manifest(&format!(
            "  schedules:\n    - {{ cron: \"0 9 * * *\", timezone: {zone} }}\n"
        ));
        let functions = parse_functions(&text).unwrap_or_else(|e| panic!("{zone}: {e}"));
        assert_eq!(functions[0].spec.schedules[0].timezone, zone);
        assert_eq!(cluster_verdict(&functions[0]), Ok(()), "{zone}");
    }
    // Left out, the zone defaults to UTC, which both accept.
    let text = manifest("  schedules:\n    - { cron: \"0 9 * * *\" }\n");
    let functions = parse_functions(&text).expect("valid");
    assert_eq!(functions[0].spec.schedules[0].timezone, "UTC");
    assert_eq!(cluster_verdict(&functions[0]), Ok(()));
}
