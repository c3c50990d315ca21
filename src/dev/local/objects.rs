//! The Secrets and ConfigMaps defined by YAML files next to the manifests,
//! and their lookup for one Function: what `flint dev` has in place of the
//! cluster's objects when a Function's environment reads one.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flint_api::k8s_openapi::api::core::v1::{ConfigMap, Secret};

use super::LocalError;

/// One Secret or ConfigMap found in a manifest directory.
#[derive(Debug, Clone)]
struct Object {
    file: PathBuf,
    data: Result<BTreeMap<String, String>, String>,
}

/// Secrets and ConfigMaps defined by YAML files, by directory, namespace,
/// kind and name.
#[derive(Debug, Default)]
pub struct Objects {
    by_key: BTreeMap<(PathBuf, String, &'static str, String), Object>,
}

/// The kind of a Secret.
pub(super) const SECRET: &str = "Secret";
/// The kind of a ConfigMap.
pub(super) const CONFIG_MAP: &str = "ConfigMap";

impl Objects {
    /// Records the Secrets and ConfigMaps among the documents of `file`.
    /// Documents of other kinds, and ones without a name, are skipped; a
    /// Secret or ConfigMap whose data cannot be read is recorded with the
    /// reason, reported when a Function reads it.
    pub fn read(&mut self, file: &Path, text: &str) {
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for value in flint_api::manifest::documents(text) {
            let kind = match value.get("kind").and_then(serde_yaml::Value::as_str) {
                Some(SECRET) => SECRET,
                Some(CONFIG_MAP) => CONFIG_MAP,
                _ => continue,
            };
            let meta = |key: &str| {
                value
                    .get("metadata")
                    .and_then(|m| m.get(key))
                    .and_then(serde_yaml::Value::as_str)
                    .map(str::to_owned)
            };
            let Some(name) = meta("name") else {
                continue;
            };
            let namespace = meta("namespace").unwrap_or_else(|| "default".to_owned());
            let data = if kind == SECRET {
                secret_data(value)
            } else {
                serde_yaml::from_value::<ConfigMap>(value)
                    .map(|c| c.data.unwrap_or_default())
                    .map_err(|e| e.to_string())
            };
            self.by_key.insert(
                (dir.clone(), namespace, kind, name),
                Object {
                    file: file.to_path_buf(),
                    data,
                },
            );
        }
    }

    fn get(&self, dir: &Path, namespace: &str, kind: &'static str, name: &str) -> Option<&Object> {
        self.by_key.get(&(
            dir.to_path_buf(),
            namespace.to_owned(),
            kind,
            name.to_owned(),
        ))
    }
}

/// A Secret's values as text: `data` decoded from base64, then
/// `stringData` on top (as the API server merges them).
fn secret_data(value: serde_yaml::Value) -> Result<BTreeMap<String, String>, String> {
    let secret: Secret = serde_yaml::from_value(value).map_err(|e| e.to_string())?;
    let mut out = BTreeMap::new();
    for (key, bytes) in secret.data.unwrap_or_default() {
        let text = String::from_utf8(bytes.0).map_err(|_| {
            format!("data.{key} is not UTF-8 text, so it cannot be an environment variable")
        })?;
        out.insert(key, text);
    }
    out.extend(secret.string_data.unwrap_or_default());
    Ok(out)
}

/// Where a Function's Secrets and ConfigMaps are looked up.
pub(super) struct Lookup<'a> {
    /// `namespace/name` of the Function, for errors.
    pub(super) who: &'a str,
    /// The Function's namespace.
    pub(super) namespace: &'a str,
    /// The manifest's directory.
    pub(super) dir: &'a Path,
    /// Every object found.
    pub(super) objects: &'a Objects,
}

impl Lookup<'_> {
    /// The data of the named object; `None` when it is missing and the
    /// reference is optional.
    pub(super) fn object(
        &self,
        field: &str,
        kind: &'static str,
        name: &str,
        optional: Option<bool>,
    ) -> Result<Option<&BTreeMap<String, String>>, LocalError> {
        let Some(object) = self.objects.get(self.dir, self.namespace, kind, name) else {
            if optional == Some(true) {
                return Ok(None);
            }
            return Err(LocalError::MissingObject {
                function: self.who.to_owned(),
                field: field.to_owned(),
                kind,
                name: name.to_owned(),
                dir: self.dir.to_path_buf(),
            });
        };
        match &object.data {
            Ok(data) => Ok(Some(data)),
            Err(reason) => Err(LocalError::BadObject {
                function: self.who.to_owned(),
                field: field.to_owned(),
                kind,
                name: name.to_owned(),
                problem: format!("{}: {reason}", object.file.display()),
            }),
        }
    }

    /// One key of the named object; `None` when it (or its object) is
    /// missing and the reference is optional.
    pub(super) fn key(
        &self,
        field: &str,
        kind: &'static str,
        name: &str,
        key: &str,
        optional: Option<bool>,
    ) -> Result<Option<String>, LocalError> {
        let Some(data) = self.object(field, kind, name, optional)? else {
            return Ok(None);
        };
        match data.get(key) {
            Some(value) => Ok(Some(value.clone())),
            None if optional == Some(true) => Ok(None),
            None => Err(LocalError::MissingKey {
                function: self.who.to_owned(),
                field: field.to_owned(),
                kind,
                name: name.to_owned(),
                key: key.to_owned(),
            }),
        }
    }
}
