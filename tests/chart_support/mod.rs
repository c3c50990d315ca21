//! Rendering the Helm chart for tests: runs the real `helm template`
//! (installed into .tools/bin by scripts/chart-tools) and reads the objects.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use serde::Deserialize;
use serde_yaml::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `helm` from .tools/bin, else from PATH.
fn helm() -> PathBuf {
    let local = repo().join(".tools/bin/helm");
    if local.exists() {
        local
    } else {
        PathBuf::from("helm")
    }
}

/// Runs `helm template` of the chart as release `flint` in `flint-system`
/// with `args`; the status and the output (stdout, or stderr on failure).
pub fn try_render(args: &[&str]) -> Result<String, String> {
    let out = Command::new(helm())
        .args([
            "template",
            "flint",
            "charts/flint",
            "--namespace",
            "flint-system",
        ])
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("running helm ({e}); install it with scripts/chart-tools"));
    if out.status.success() {
        Ok(String::from_utf8(out.stdout).unwrap())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Renders the chart into its objects; fails the test if helm refuses.
pub fn render(args: &[&str]) -> Vec<Value> {
    let text = try_render(args).unwrap_or_else(|e| panic!("helm template failed: {e}"));
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

/// The string at `path` in `v`, `""` when absent.
pub fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The strings of the sequence `key` of `v`.
pub fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_sequence)
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The object of `kind` named `name`, if rendered.
pub fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| s(o, &["kind"]) == kind && s(o, &["metadata", "name"]) == name)
}

/// The object of `kind` named `name`; fails the test if it is not rendered.
pub fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(objects, kind, name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The first container of a Deployment or StatefulSet.
pub fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// The environment variable `name` of `container`, if set.
pub fn env<'a>(container: &'a Value, name: &str) -> Option<&'a Value> {
    container["env"]
        .as_sequence()?
        .iter()
        .find(|e| s(e, &["name"]) == name)
}
