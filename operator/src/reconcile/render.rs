//! `flint render`: every object the operator would create for a Function
//! manifest that is applied for the first time, as a YAML stream. It exists
//! so the test suite can validate each one against the Kubernetes schemas.

use flint_api::{Function, ManifestError, parse_functions};

use super::applied::stamp_all;
use super::desired::{DesiredError, desired_objects};

/// Namespace a manifest without one is rendered in (as `kubectl apply` does).
pub const DEFAULT_NAMESPACE: &str = "default";
/// The uid rendered objects name as their owner's. The API server assigns a
/// Function's uid when it is created; a manifest on disk has none, and the
/// owner reference must carry one to be a valid object.
pub const RENDER_UID: &str = "00000000-0000-0000-0000-000000000000";

/// Why a manifest could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// The manifest is not a valid Function manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The Function cannot be turned into objects.
    #[error(transparent)]
    Desired(#[from] DesiredError),
    /// An object could not be written as YAML.
    #[error("writing YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

/// Renders the objects of every Function in `manifest` (YAML, one or more
/// documents) as one YAML stream, documents separated by `---`.
pub fn render_manifest(manifest: &str) -> Result<String, RenderError> {
    let mut out = String::new();
    for function in parse_functions(manifest)? {
        render_function(function, &mut out)?;
    }
    Ok(out)
}

fn render_function(mut function: Function, out: &mut String) -> Result<(), RenderError> {
    let meta = &mut function.metadata;
    meta.namespace
        .get_or_insert_with(|| DEFAULT_NAMESPACE.to_owned());
    meta.uid.get_or_insert_with(|| RENDER_UID.to_owned());
    meta.generation.get_or_insert(1);
    let mut desired = desired_objects(&function, &[])?;
    stamp_all(&mut desired);
    if let Some(deployment) = &desired.deployment {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(deployment)?);
    }
    for service in &desired.services {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(service)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_deployment_and_a_service_per_function() {
        let manifest = "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: a}\nspec: {image: x:1}\n---\napiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: b, namespace: prod}\nspec: {image: y:1}\n";
        let yaml = render_manifest(manifest).unwrap();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let summary: Vec<(String, String, String)> = docs
            .iter()
            .map(|d| {
                (
                    d["kind"].as_str().unwrap().to_owned(),
                    d["metadata"]["namespace"].as_str().unwrap().to_owned(),
                    d["metadata"]["name"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let expect = |k: &str, ns: &str, n: &str| (k.to_owned(), ns.to_owned(), n.to_owned());
        assert_eq!(
            summary,
            [
                expect("Deployment", "default", "a-00001"),
                expect("Service", "default", "a-00001"),
                expect("Deployment", "prod", "b-00001"),
                expect("Service", "prod", "b-00001"),
            ]
        );
        assert_eq!(docs[0]["apiVersion"].as_str(), Some("apps/v1"));
        assert_eq!(docs[1]["apiVersion"].as_str(), Some("v1"));
        assert_eq!(
            docs[0]["metadata"]["ownerReferences"][0]["uid"].as_str(),
            Some(RENDER_UID)
        );
    }

    #[test]
    fn invalid_manifests_are_refused() {
        let err = render_manifest("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n");
        assert!(
            matches!(
                err,
                Err(RenderError::Manifest(ManifestError::WrongKind { .. }))
            ),
            "{err:?}"
        );
    }
}
