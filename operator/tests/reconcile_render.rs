//! `flint render` of the every-field manifest: the objects come out with
//! valid names at the longest Function name (scripts/test validates the
//! same output against the Kubernetes schemas).

use flint_api::names::{MAX_FUNCTION_NAME_LEN, is_dns1035_label};
use flint_operator::reconcile::render::render_manifest;
use serde::Deserialize;

#[test]
fn every_field_manifest_renders_with_valid_names() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reconcile_every_field.yaml"
    );
    let yaml = render_manifest(&std::fs::read_to_string(path).unwrap()).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert_eq!(name.len(), MAX_FUNCTION_NAME_LEN + 6);
        assert!(is_dns1035_label(name), "{name}");
        for (_, value) in doc["metadata"]["labels"].as_mapping().unwrap() {
            assert!(value.as_str().unwrap().len() <= 63);
        }
    }
    let pod = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"].as_sequence().unwrap().len(), 2);
    assert_eq!(pod["terminationGracePeriodSeconds"].as_i64(), Some(65));
}
