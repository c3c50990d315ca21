//! A Function's environment as `flint dev` gives it to a replica: the
//! `.env` file next to the manifest, then `envFrom`, then `env` (with
//! `valueFrom` read from the Secrets and ConfigMaps next to the manifest, or
//! from the downward API's local values); later sources win, as in a pod.

use std::collections::BTreeMap;
use std::path::Path;

use flint_api::Function;

use super::LocalError;
use super::objects::{CONFIG_MAP, Lookup, SECRET};

/// The environment file read from each manifest's directory.
pub const DOT_ENV: &str = ".env";

/// Parses a `.env` file: `KEY=VALUE` lines (an `export ` prefix is
/// allowed), blank lines and `#` comments. A value may be wrapped in
/// double or single quotes, which are removed; an unquoted value ends at
/// ` #`. Anything else is refused with its line number.
pub fn parse_dot_env(file: &Path, text: &str) -> Result<Vec<(String, String)>, LocalError> {
    let mut out = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let error = |reason: String| LocalError::DotEnvLine {
            file: file.to_path_buf(),
            line: index + 1,
            reason,
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(error(format!("expected KEY=VALUE, found {line:?}")));
        };
        let key = key.trim();
        let mut chars = key.chars();
        let valid = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(error(format!(
                "{key:?} is not a variable name (letters, digits and _, not starting with a digit)"
            )));
        }
        let value = value.trim();
        let value = match value.chars().next() {
            Some(quote @ ('"' | '\'')) => {
                let inner = &value[1..];
                match inner.strip_suffix(quote) {
                    Some(inner) if !inner.contains(quote) => inner.to_owned(),
                    _ => {
                        return Err(error(format!(
                            "the value of {key} opens a {quote} quote that does not close at the end of the line"
                        )));
                    }
                }
            }
            _ => match value.find(" #") {
                Some(at) => value[..at].trim_end().to_owned(),
                None => value.to_owned(),
            },
        };
        out.push((key.to_owned(), value));
    }
    Ok(out)
}

/// The environment of `function`, by name, from every source in order.
pub(super) fn environment(
    function: &Function,
    lookup: &Lookup<'_>,
) -> Result<BTreeMap<String, String>, LocalError> {
    let spec = &function.spec;
    let who = lookup.who;
    let mut env = BTreeMap::new();
    let dot_env = lookup.dir.join(DOT_ENV);
    match std::fs::read_to_string(&dot_env) {
        Ok(text) => env.extend(parse_dot_env(&dot_env, &text)?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(LocalError::DotEnvRead {
                file: dot_env,
                reason: e.to_string(),
            });
        }
    }
    for (i, source) in spec.env_from.iter().enumerate() {
        let prefix = source.prefix.as_deref().unwrap_or_default();
        let (kind, reference, field) = match (&source.secret_ref, &source.config_map_ref) {
            (Some(r), _) => (
                SECRET,
                (r.name.as_str(), r.optional),
                format!("spec.envFrom[{i}].secretRef"),
            ),
            (None, Some(r)) => (
                CONFIG_MAP,
                (r.name.as_str(), r.optional),
                format!("spec.envFrom[{i}].configMapRef"),
            ),
            (None, None) => continue,
        };
        if let Some(data) = lookup.object(&field, kind, reference.0, reference.1)? {
            for (key, value) in data {
                env.insert(format!("{prefix}{key}"), value.clone());
            }
        }
    }
    for (i, var) in spec.env.iter().enumerate() {
        let value = match &var.value_from {
            None => Some(var.value.clone().unwrap_or_default()),
            Some(source) => {
                let base = format!("spec.env[{i}].valueFrom");
                if let Some(r) = &source.secret_key_ref {
                    let field = format!("{base}.secretKeyRef");
                    lookup.key(&field, SECRET, &r.name, &r.key, r.optional)?
                } else if let Some(r) = &source.config_map_key_ref {
                    let field = format!("{base}.configMapKeyRef");
                    lookup.key(&field, CONFIG_MAP, &r.name, &r.key, r.optional)?
                } else if let Some(r) = &source.field_ref {
                    Some(field_value(function, &r.field_path).ok_or_else(|| {
                        LocalError::NotHonoured {
                            function: who.to_owned(),
                            field: format!("{base}.fieldRef.fieldPath"),
                            reason: format!(
                                "{:?} has no local value (flint dev sets metadata.name, metadata.namespace, metadata.labels['...'], metadata.annotations['...'], spec.nodeName, spec.serviceAccountName, status.podIP and status.hostIP); set the variable with `value` or in {DOT_ENV}",
                                r.field_path
                            ),
                        }
                    })?)
                } else if source.resource_field_ref.is_some() {
                    return Err(LocalError::NotHonoured {
                        function: who.to_owned(),
                        field: format!("{base}.resourceFieldRef"),
                        reason: format!(
                            "flint dev does not apply container resources, so it has no value for this; set the variable with `value` or in {DOT_ENV}"
                        ),
                    });
                } else {
                    None
                }
            }
        };
        if let Some(value) = value {
            env.insert(var.name.clone(), value);
        }
    }
    Ok(env)
}

/// The local value of a downward-API field (`fieldRef.fieldPath`).
fn field_value(function: &Function, path: &str) -> Option<String> {
    let spec = &function.spec;
    let name = function.metadata.name.as_deref().unwrap_or_default();
    let map_key = |prefix: &str| {
        path.strip_prefix(prefix)?
            .strip_suffix("']")
            .map(str::to_owned)
    };
    if let Some(key) = map_key("metadata.labels['") {
        return Some(spec.pod_labels.get(&key).cloned().unwrap_or_default());
    }
    if let Some(key) = map_key("metadata.annotations['") {
        return Some(spec.pod_annotations.get(&key).cloned().unwrap_or_default());
    }
    Some(match path {
        "metadata.name" => format!("{name}-local"),
        "metadata.namespace" => function
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
        "spec.nodeName" => "localhost".into(),
        "spec.serviceAccountName" => spec
            .service_account_name
            .clone()
            .unwrap_or_else(|| "default".into()),
        "status.podIP" | "status.hostIP" => "127.0.0.1".into(),
        _ => return None,
    })
}
