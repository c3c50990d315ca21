//! Every example manifest is a valid Function twice over: by `flint`'s own
//! parser and validator, and by the generated CRD's openAPIV3Schema (the check
//! the API server runs before its CEL rules).

use std::path::{Path, PathBuf};

fn example_manifests() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut found = Vec::new();
    for entry in std::fs::read_dir(&root)
        .expect("examples/ exists")
        .flatten()
    {
        for file in std::fs::read_dir(entry.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.starts_with("function") && name.ends_with(".yaml") {
                found.push(file.path());
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_example_manifest_is_valid_for_flint_and_for_the_crd_schema() {
    let manifests = example_manifests();
    assert!(!manifests.is_empty(), "no example manifests found");
    let schema = flint_api::crd::function_schema().expect("CRD has a schema");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    for path in manifests {
        let text = std::fs::read_to_string(&path).expect("readable");
        let functions =
            flint_api::parse_functions(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(!functions.is_empty(), "{}: no Function", path.display());
        // The raw documents, as kubectl would send them, against the schema.
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value: serde_json::Value = serde::Deserialize::deserialize(doc).expect("yaml");
            if value.is_null() {
                continue;
            }
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{}: {e}", e.instance_path))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        }
    }
}
