//! Finding and reading the Function manifests under `flint dev`'s directory.
//! A bad file is reported with its path, field and reason; the others load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flint_api::Function;

use super::local::{self, LocalRun, Objects};

/// One Function read from a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The manifest file.
    pub path: PathBuf,
    /// The Function, validated, with its namespace filled in.
    pub function: Function,
    /// How its replicas run locally (environment, directory, probes).
    pub local: LocalRun,
}

/// The result of one scan: the Functions that loaded and one message per bad file.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid Functions, in path order.
    pub functions: Vec<Loaded>,
    /// `path: reason` for each file that could not be used.
    pub errors: Vec<String>,
}

/// Modification time and size of every YAML and `.env` file under a directory: what a
/// rescan compares before reading anything, so an idle `flint dev` with many
/// Functions costs a few `stat` calls per second, not a re-parse.
pub type Fingerprint = BTreeMap<PathBuf, (Option<std::time::SystemTime>, u64)>;

/// The fingerprint of the YAML and `.env` files under `dir`.
pub fn fingerprint(dir: &Path) -> Fingerprint {
    let mut files = Vec::new();
    collect(dir, &mut files, &mut Vec::new());
    files
        .into_iter()
        .map(|path| {
            let meta = std::fs::metadata(&path).ok();
            let stamp = (
                meta.as_ref().and_then(|m| m.modified().ok()),
                meta.map_or(0, |m| m.len()),
            );
            (path, stamp)
        })
        .collect()
}

/// Reads every `*.yaml` / `*.yml` file under `dir` that declares `kind:
/// Function`, resolving each Function's local run with the Secrets and
/// ConfigMaps defined by the YAML files next to its manifest and the `.env`
/// file there.
pub fn scan(dir: &Path) -> Scan {
    let mut scan = Scan::default();
    let mut files = Vec::new();
    collect(dir, &mut files, &mut scan.errors);
    files.retain(|p| p.file_name().is_none_or(|n| n != local::DOT_ENV));
    files.sort();
    let mut texts = Vec::with_capacity(files.len());
    let mut objects = Objects::default();
    for path in files {
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                if text.contains("kind: Secret") || text.contains("kind: ConfigMap") {
                    objects.read(&path, &text);
                }
                texts.push((path, text));
            }
            Err(e) => scan
                .errors
                .push(format!("{}: cannot read: {e}", path.display())),
        }
    }
    let mut seen: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for (path, text) in texts {
        if !text.contains("kind: Function") {
            continue;
        }
        match flint_api::parse_functions(&text) {
            Ok(functions) => {
                for mut function in functions {
                    let ns = function
                        .metadata
                        .namespace
                        .get_or_insert_with(|| "default".to_owned())
                        .clone();
                    let name = function.metadata.name.clone().unwrap_or_default();
                    if let Some(first) = seen.get(&(ns.clone(), name.clone())) {
                        scan.errors.push(format!(
                            "{}: function {ns}/{name} is already defined in {}",
                            path.display(),
                            first.display()
                        ));
                        continue;
                    }
                    if function.spec.command.is_none() {
                        scan.errors.push(format!(
                            "{}: function {ns}/{name}: spec.command: is required by flint dev (the program to run locally)",
                            path.display()
                        ));
                        continue;
                    }
                    let local = match local::resolve(&function, &path, &objects) {
                        Ok(local) => local,
                        Err(e) => {
                            scan.errors.push(format!("{}: {e}", path.display()));
                            continue;
                        }
                    };
                    seen.insert((ns, name), path.clone());
                    scan.functions.push(Loaded {
                        path: path.clone(),
                        function,
                        local,
                    });
                }
            }
            Err(e) => scan.errors.push(format!("{}: {e}", path.display())),
        }
    }
    scan
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>, errors: &mut Vec<String>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(format!("{}: cannot list: {e}", dir.display()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if name == local::DOT_ENV && is_file {
            out.push(path);
            continue;
        }
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => collect(&path, out, errors),
            Ok(t) if t.is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) => {
                out.push(path)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, rel: &str, text: &str) {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    const GOOD: &str = "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: NAME}\nspec: {image: x, command: [python3, app.py]}\n";

    #[test]
    fn env_comes_from_secrets_config_maps_and_dot_env_next_to_the_manifest() {
        let dir = std::env::temp_dir().join(format!("flint-loader-env-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let with_env = |name: &str, env: &str| {
            GOOD.replace("NAME", name).replace(
                "command: [python3, app.py]",
                &format!("command: [python3, app.py], {env}"),
            )
        };
        write(
            &dir,
            "a/function.yaml",
            &with_env(
                "alpha",
                "envFrom: [{configMapRef: {name: settings}}], env: [{name: TOKEN, valueFrom: {secretKeyRef: {name: creds, key: token}}}]",
            ),
        );
        write(
            &dir,
            "a/objects.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\ndata: {token: czNjcjN0}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {MODE: fast}\n",
        );
        write(&dir, "a/.env", "# local\nMODE=slow\nEXTRA='x y'\n");
        // A Secret in another directory is not visible to b's Function.
        write(
            &dir,
            "b/function.yaml",
            &with_env("beta", "envFrom: [{secretRef: {name: creds}}]"),
        );
        write(&dir, "c/function.yaml", &GOOD.replace("NAME", "gamma"));
        write(&dir, "c/.env", "OK=1\nnot a line\n");
        let scan = scan(&dir);
        let names: Vec<_> = scan
            .functions
            .iter()
            .map(|l| l.function.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["alpha"], "{:?}", scan.errors);
        let env = &scan.functions[0].local.env;
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            pairs,
            [("EXTRA", "x y"), ("MODE", "fast"), ("TOKEN", "s3cr3t")]
        );
        assert_eq!(scan.errors.len(), 2, "{:?}", scan.errors);
        assert!(
            scan.errors[0].contains(
                "b/function.yaml: function default/beta: spec.envFrom[0].secretRef: Secret \"creds\" not found"
            ),
            "{}",
            scan.errors[0]
        );
        assert!(
            scan.errors[1].ends_with("c/.env:2: expected KEY=VALUE, found \"not a line\""),
            "{}",
            scan.errors[1]
        );
        // .env files count for the fingerprint, so editing one reloads.
        assert_eq!(fingerprint(&dir).len(), 6);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_typo_is_reported_as_an_unknown_field_with_a_suggestion() {
        let dir = std::env::temp_dir().join(format!("flint-loader-typo-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(
            &dir,
            "a/function.yaml",
            &GOOD
                .replace("NAME", "alpha")
                .replace("image: x", "imagee: x"),
        );
        let scan = scan(&dir);
        assert!(scan.functions.is_empty());
        assert!(
            scan.errors[0].ends_with(
                "a/function.yaml: document 1: spec.imagee: unknown field; did you mean `image`?"
            ),
            "{:?}",
            scan.errors
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn loads_good_files_and_reports_bad_ones_by_path_and_field() {
        let dir = std::env::temp_dir().join(format!("flint-loader-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        write(&dir, "a/function.yaml", &GOOD.replace("NAME", "alpha"));
        write(&dir, "b/function.yml", &GOOD.replace("NAME", "beta"));
        write(
            &dir,
            "c/function.yaml",
            &GOOD
                .replace("NAME", "gamma")
                .replace("image: x", "image: x, port: 9091"),
        );
        write(&dir, "d/function.yaml", &GOOD.replace("NAME", "alpha"));
        write(
            &dir,
            "e/function.yaml",
            "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: delta}\nspec: {image: x}\n",
        );
        write(&dir, "f/other.yaml", "apiVersion: v1\nkind: ConfigMap\n");
        write(
            &dir,
            ".hidden/function.yaml",
            &GOOD.replace("NAME", "hidden"),
        );
        let scan = scan(&dir);
        let names: Vec<_> = scan
            .functions
            .iter()
            .map(|l| l.function.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
        assert_eq!(
            scan.functions[0].function.metadata.namespace.as_deref(),
            Some("default")
        );
        assert_eq!(scan.errors.len(), 3, "{:?}", scan.errors);
        assert!(
            scan.errors[0]
                .contains("c/function.yaml: function \"gamma\": spec.port: 9091 is reserved"),
            "{}",
            scan.errors[0]
        );
        assert!(
            scan.errors[1]
                .contains("d/function.yaml: function default/alpha is already defined in"),
            "{}",
            scan.errors[1]
        );
        assert!(
            scan.errors[2]
                .contains("e/function.yaml: function default/delta: spec.command: is required"),
            "{}",
            scan.errors[2]
        );
        assert_eq!(
            fingerprint(&dir).len(),
            6,
            "every YAML file outside dot-directories"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
