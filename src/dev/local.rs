//! What `flint dev` makes of a Function's pod-template fields when it runs
//! the function as local processes: the environment (`env`, `envFrom`, a
//! `.env` file, Secret and ConfigMap manifests next to the manifest), the
//! working directory and the probes are honoured; what it cannot honour in
//! a way that would change the function's behaviour is refused with the
//! field named; what only places pods on a cluster gets a note.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use flint_api::Function;
use flint_api::k8s_openapi::api::core::v1::{ConfigMap, Probe, Secret};
use flint_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use flint_runtime::local::{LocalProbe, ProbeCheck, Probes};

/// The environment file read from each manifest's directory.
pub const DOT_ENV: &str = ".env";

/// Why a Function cannot run locally as its manifest says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocalError {
    /// A line of a `.env` file is not `KEY=VALUE`, a comment or blank.
    #[error("{}:{line}: {reason}", file.display())]
    DotEnvLine {
        /// The `.env` file.
        file: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },
    /// A `.env` file exists but cannot be read.
    #[error("{}: cannot read: {reason}", file.display())]
    DotEnvRead {
        /// The `.env` file.
        file: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// A Secret or ConfigMap the Function reads is defined nowhere in the
    /// manifest's directory.
    #[error(
        "function {function}: {field}: {kind} {name:?} not found: no YAML file in {} defines a {kind} named {name:?} in namespace {}; add its manifest there, or mark the reference `optional: true`",
        dir.display(),
        namespace_of(function)
    )]
    MissingObject {
        /// `namespace/name` of the Function.
        function: String,
        /// Path of the reference, e.g. `spec.envFrom[0].secretRef`.
        field: String,
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// The object's name (looked up in the Function's namespace).
        name: String,
        /// The directory searched.
        dir: PathBuf,
    },
    /// A Secret or ConfigMap exists but lacks the key a variable reads.
    #[error(
        "function {function}: {field}: {kind} {name:?} has no key {key:?}; add it, or mark the reference `optional: true`"
    )]
    MissingKey {
        /// `namespace/name` of the Function.
        function: String,
        /// Path of the reference, e.g. `spec.env[2].valueFrom.secretKeyRef`.
        field: String,
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A Secret or ConfigMap the Function reads cannot be used.
    #[error("function {function}: {field}: {kind} {name:?} in {problem}")]
    BadObject {
        /// `namespace/name` of the Function.
        function: String,
        /// Path of the reference.
        field: String,
        /// `Secret` or `ConfigMap`.
        kind: &'static str,
        /// The object's name.
        name: String,
        /// The file defining it and what is wrong with it (e.g. a value
        /// that is not base64), as `file: reason`.
        problem: String,
    },
    /// A field `flint dev` cannot honour, and ignoring it would change how
    /// the function behaves.
    #[error("function {function}: {field}: {reason}")]
    NotHonoured {
        /// `namespace/name` of the Function.
        function: String,
        /// The field.
        field: String,
        /// Why, and what to do instead.
        reason: String,
    },
}

/// The namespace part of `namespace/name`.
fn namespace_of(function: &str) -> &str {
    function.split_once('/').map_or("default", |(ns, _)| ns)
}

/// How `flint dev` runs a Function's replicas, resolved from its manifest
/// and the files next to it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LocalRun {
    /// The environment, sorted by name: the `.env` file, then `envFrom`,
    /// then `env` (later sources win, as in a pod).
    pub env: Vec<(String, String)>,
    /// The working directory: the manifest's directory, or `workingDir`
    /// taken relative to it.
    pub dir: PathBuf,
    /// The probes run against each replica.
    pub probes: Probes,
    /// Fields that are not applied locally, for one note per Function.
    pub notes: Vec<String>,
}

impl LocalRun {
    /// A digest of what the spec hash does not cover (the resolved
    /// environment and directory), so that editing a `.env` file or a
    /// Secret manifest rolls a new revision as editing the Function does.
    pub fn identity(&self) -> String {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.env.hash(&mut hasher);
        self.dir.hash(&mut hasher);
        format!("{:016x}", hasher.finish())
    }
}

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

const SECRET: &str = "Secret";
const CONFIG_MAP: &str = "ConfigMap";

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

/// Resolves how `flint dev` runs `function`, read from `manifest`, given
/// the Secrets and ConfigMaps found next to the manifests.
pub fn resolve(
    function: &Function,
    manifest: &Path,
    objects: &Objects,
) -> Result<LocalRun, LocalError> {
    let namespace = function.metadata.namespace.as_deref().unwrap_or("default");
    let name = function.metadata.name.as_deref().unwrap_or_default();
    let who = format!("{namespace}/{name}");
    let manifest_dir = manifest.parent().unwrap_or(Path::new("."));
    let spec = &function.spec;
    let lookup = Lookup {
        who: &who,
        namespace,
        dir: manifest_dir,
        objects,
    };

    let mut env = BTreeMap::new();
    let dot_env = manifest_dir.join(DOT_ENV);
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
                            function: who.clone(),
                            field: format!("{base}.fieldRef.fieldPath"),
                            reason: format!(
                                "{:?} has no local value (flint dev sets metadata.name, metadata.namespace, metadata.labels['...'], metadata.annotations['...'], spec.nodeName, spec.serviceAccountName, status.podIP and status.hostIP); set the variable with `value` or in {DOT_ENV}",
                                r.field_path
                            ),
                        }
                    })?)
                } else if source.resource_field_ref.is_some() {
                    return Err(LocalError::NotHonoured {
                        function: who,
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

    let dir = working_dir(spec.working_dir.as_deref(), manifest_dir).map_err(|reason| {
        LocalError::NotHonoured {
            function: who.clone(),
            field: "spec.workingDir".into(),
            reason,
        }
    })?;

    let mut notes = Vec::new();
    let probe = |p: &Option<Probe>, field: &str, notes: &mut Vec<String>| match p {
        None => Ok(None),
        Some(p) => local_probe(p, field, spec.port, &who, notes),
    };
    let probes = Probes {
        startup: probe(&spec.startup_probe, "spec.startupProbe", &mut notes)?,
        readiness: probe(&spec.readiness_probe, "spec.readinessProbe", &mut notes)?,
        liveness: probe(&spec.liveness_probe, "spec.livenessProbe", &mut notes)?,
    };
    let skipped = not_applied_locally(function);
    if !skipped.is_empty() {
        notes.insert(
            0,
            format!(
                "function {who}: {} not applied by flint dev (it runs only the function's own command, on this machine)",
                skipped.join(", ")
            ),
        );
    }
    Ok(LocalRun {
        env: env.into_iter().collect(),
        dir,
        probes,
        notes,
    })
}

/// Where a Function's Secrets and ConfigMaps are looked up.
struct Lookup<'a> {
    who: &'a str,
    namespace: &'a str,
    dir: &'a Path,
    objects: &'a Objects,
}

impl Lookup<'_> {
    /// The data of the named object; `None` when it is missing and the
    /// reference is optional.
    fn object(
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
    fn key(
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

/// The local working directory for `workingDir`: the manifest's directory
/// stands for the image's root, so `/srv/app` is `<manifest dir>/srv/app`
/// and `/` the manifest's directory itself. A path that leaves the
/// manifest's directory (through `..` or a symbolic link) or does not exist
/// is refused.
pub fn working_dir(working_dir: Option<&str>, manifest_dir: &Path) -> Result<PathBuf, String> {
    let Some(wanted) = working_dir else {
        return Ok(manifest_dir.to_path_buf());
    };
    let mut relative = PathBuf::new();
    for component in Path::new(wanted).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => relative.push(part),
            Component::ParentDir => {
                if !relative.pop() {
                    return Err(format!(
                        "{wanted:?} leaves the manifest's directory (flint dev takes workingDir relative to {}, which stands for the image's root)",
                        manifest_dir.display()
                    ));
                }
            }
            Component::Prefix(_) => return Err(format!("{wanted:?} is not a Unix path")),
        }
    }
    let local = manifest_dir.join(&relative);
    let (Ok(real), Ok(root)) = (local.canonicalize(), manifest_dir.canonicalize()) else {
        return Err(format!(
            "{wanted:?} is {} locally, which does not exist (flint dev takes workingDir relative to the manifest's directory, which stands for the image's root)",
            local.display()
        ));
    };
    if !real.starts_with(&root) {
        return Err(format!(
            "{wanted:?} is {} locally, a link out of the manifest's directory {}",
            local.display(),
            manifest_dir.display()
        ));
    }
    if !real.is_dir() {
        return Err(format!(
            "{wanted:?} is {} locally, which is not a directory",
            local.display()
        ));
    }
    Ok(local)
}

/// A manifest probe as run against a local replica; `None` (with a note)
/// for handlers `flint dev` does not run (exec, gRPC).
fn local_probe(
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

/// The fields of `function` that `flint dev` does not apply: the other
/// containers of the pod (sidecars, init containers) and where a cluster
/// would place the pods. Settings that change nothing about how a local
/// process behaves (image, resources, security context) are not listed.
pub fn not_applied_locally(function: &Function) -> Vec<&'static str> {
    let spec = &function.spec;
    [
        ("spec.initContainers", !spec.init_containers.is_empty()),
        ("spec.sidecars", !spec.sidecars.is_empty()),
        ("spec.nodeSelector", !spec.node_selector.is_empty()),
        ("spec.affinity", spec.affinity.is_some()),
        ("spec.tolerations", !spec.tolerations.is_empty()),
        (
            "spec.topologySpreadConstraints",
            !spec.topology_spread_constraints.is_empty(),
        ),
        ("spec.runtimeClassName", spec.runtime_class_name.is_some()),
        ("spec.priorityClassName", spec.priority_class_name.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect()
}

#[cfg(test)]
#[path = "local_tests.rs"]
mod tests;
