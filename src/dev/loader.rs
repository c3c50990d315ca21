//! Finding and reading the Function manifests under `flint dev`'s directory.
//! A bad file is reported with its path, field and reason; the others load.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use flint_api::Function;

/// One Function read from a manifest file.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The manifest file.
    pub path: PathBuf,
    /// The Function, validated, with its namespace filled in.
    pub function: Function,
}

/// The result of one scan: the Functions that loaded and one message per bad file.
#[derive(Debug, Default)]
pub struct Scan {
    /// Valid Functions, in path order.
    pub functions: Vec<Loaded>,
    /// `path: reason` for each file that could not be used.
    pub errors: Vec<String>,
}

/// Modification time and size of every YAML file under a directory: what a
/// rescan compares before reading anything, so an idle `flint dev` with many
/// Functions costs a few `stat` calls per second, not a re-parse.
pub type Fingerprint = BTreeMap<PathBuf, (Option<std::time::SystemTime>, u64)>;

/// The fingerprint of the YAML files under `dir`.
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

/// Reads every `*.yaml` / `*.yml` file under `dir` that declares `kind: Function`.
pub fn scan(dir: &Path) -> Scan {
    let mut scan = Scan::default();
    let mut files = Vec::new();
    collect(dir, &mut files, &mut scan.errors);
    files.sort();
    let mut seen: BTreeMap<(String, String), PathBuf> = BTreeMap::new();
    for path in files {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                scan.errors
                    .push(format!("{}: cannot read: {e}", path.display()));
                continue;
            }
        };
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
                    seen.insert((ns, name), path.clone());
                    scan.functions.push(Loaded {
                        path: path.clone(),
                        function,
                    });
                }
            }
            Err(e) => scan.errors.push(format!("{}: {e}", path.display())),
        }
    }
    scan
}

/// The fields of `function` that name containers besides its own, which
/// `flint dev` does not run (it runs only `command`, as a local process).
/// Other cluster-only settings (image, security context, scheduling) change
/// nothing about a local process and are ignored without a word.
pub fn not_run_locally(function: &Function) -> Vec<&'static str> {
    let spec = &function.spec;
    [
        ("spec.initContainers", spec.init_containers.is_empty()),
        ("spec.sidecars", spec.sidecars.is_empty()),
    ]
    .into_iter()
    .filter_map(|(field, empty)| (!empty).then_some(field))
    .collect()
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
    fn sidecars_and_init_containers_are_named_as_not_run_locally() {
        let plain = flint_api::parse_functions(&GOOD.replace("NAME", "plain")).unwrap();
        assert!(not_run_locally(&plain[0]).is_empty());
        let with = GOOD.replace("NAME", "with").replace(
            "command: [python3, app.py]",
            "command: [python3, app.py], sidecars: [{name: proxy, image: p:1}], initContainers: [{name: init, image: i:1}]",
        );
        let with = flint_api::parse_functions(&with).unwrap();
        assert_eq!(
            not_run_locally(&with[0]),
            ["spec.initContainers", "spec.sidecars"]
        );
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
