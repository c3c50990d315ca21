//! What `flint dev` makes of a Function's pod-template fields when it runs
//! the function as local processes: the environment (`env`, `envFrom`, a
//! `.env` file, Secret and ConfigMap manifests next to the manifest), the
//! working directory and the probes are honoured; what it cannot honour in
//! a way that would change the function's behaviour is refused with the
//! field named; what only places pods on a cluster gets a note.
//!
//! [`resolve`] walks the fields in that order, into a [`LocalRun`] that
//! becomes each replica's process ([`LocalRun::process_spec`]); each part it
//! reads has its own module: the environment (`env`), the Secrets and
//! ConfigMaps next to the manifests (`objects`), the working directory
//! (`working_dir`) and the probes (`probe`).

mod env;
mod objects;
mod probe;
mod working_dir;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flint_api::k8s_openapi::api::core::v1::Probe;
use flint_api::{Function, FunctionSpec};
use flint_runtime::local::{Probes, ProcessSpec};

pub use env::DOT_ENV;
use objects::Lookup;
pub use objects::Objects;
use working_dir::working_dir;

/// Longest time a local replica may take to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Time between SIGTERM and SIGKILL for a local replica.
const STOP_GRACE: Duration = Duration::from_secs(5);

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

    /// How the replicas of `revision` run: `command` and `args` of `spec`,
    /// with this environment, directory and probes.
    pub fn process_spec(&self, spec: &FunctionSpec, revision: &str) -> ProcessSpec {
        let argv = spec
            .command
            .iter()
            .flatten()
            .chain(spec.args.iter().flatten())
            .cloned()
            .collect();
        ProcessSpec {
            argv,
            env: self.env.clone(),
            dir: self.dir.clone(),
            probes: self.probes.clone(),
            log_prefix: revision.to_owned(),
            startup_timeout: STARTUP_TIMEOUT,
            stop_grace: STOP_GRACE,
        }
    }
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

    let env = env::environment(function, &lookup)?;

    let dir = working_dir(spec.working_dir.as_deref(), manifest_dir).map_err(|reason| {
        LocalError::NotHonoured {
            function: who.clone(),
            field: "spec.workingDir".into(),
            reason,
        }
    })?;

    let mut notes = Vec::new();
    let probe = |p: &Option<Box<Probe>>, field: &str, notes: &mut Vec<String>| match p {
        None => Ok(None),
        Some(p) => probe::local_probe(p, field, spec.port, &who, notes),
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
