//! Whether a revision's image is resolved, and what the revision then runs.
//! Pure: the registry is asked elsewhere ([`super::resolver`]).

use oci_client::{ParseError, Reference};

use super::registries::RegistryList;

/// The image of a Function is not a valid image reference.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("image {image:?} is not a valid image reference: {source}")]
pub struct ReferenceError {
    /// The image as written in `spec.image`.
    pub image: String,
    /// Why it does not parse.
    pub source: ParseError,
}

/// What to do with a new revision's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// It names a digest already (`repo@sha256:…`, with or without a tag):
    /// it is immutable as written, and runs as written.
    Pinned,
    /// Its registry is on the skip list: it runs as written, tag and all.
    Skipped {
        /// The registry, as in the reference.
        registry: String,
    },
    /// Resolve its tag (`latest` when it has none) in its registry.
    Resolve(Box<Reference>),
}

/// Decides what to do with `image`, given the registries whose tags are
/// not resolved. An image that does not parse is an error naming it: the
/// kubelet could not pull it either.
pub fn plan(image: &str, skip: &RegistryList) -> Result<Plan, ReferenceError> {
    let reference = Reference::try_from(image).map_err(|source| ReferenceError {
        image: image.to_owned(),
        source,
    })?;
    if reference.digest().is_some() {
        return Ok(Plan::Pinned);
    }
    if skip.contains(reference.registry()) {
        return Ok(Plan::Skipped {
            registry: reference.registry().to_owned(),
        });
    }
    Ok(Plan::Resolve(Box::new(reference)))
}

/// The reference a revision runs once its tag is resolved: registry,
/// repository and digest, without the tag (`reg.example/team/app@sha256:…`;
/// `docker.io/library/python@sha256:…` for `python:3.12`), as Knative
/// writes it. Spelled out in full so that it means the same to every
/// container runtime.
pub fn pinned(reference: &Reference, digest: &str) -> String {
    format!(
        "{}/{}@{}",
        reference.registry(),
        reference.repository(),
        digest
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn skip() -> RegistryList {
        RegistryList::default_skip()
    }

    fn resolved(image: &str) -> String {
        match plan(image, &skip()).unwrap() {
            Plan::Resolve(reference) => pinned(&reference, DIGEST),
            other => panic!("{image}: {other:?}"),
        }
    }

    #[test]
    fn tags_are_resolved_and_pinned_without_the_tag() {
        let table = [
            ("reg.example/team/app:1.2", "reg.example/team/app"),
            ("reg.example:5000/app:v1", "reg.example:5000/app"),
            ("127.0.0.1:5000/hello:dev", "127.0.0.1:5000/hello"),
            ("python:3.12", "docker.io/library/python"),
            ("ghcr.io/org/app", "ghcr.io/org/app"),
            ("user/app:latest", "docker.io/user/app"),
        ];
        for (image, name) in table {
            assert_eq!(resolved(image), format!("{name}@{DIGEST}"), "{image}");
        }
    }

    #[test]
    fn a_digest_is_used_as_written() {
        for image in [
            format!("reg.example/app@{DIGEST}"),
            format!("reg.example/app:1@{DIGEST}"),
            format!("localhost/app@{DIGEST}"),
        ] {
            assert_eq!(plan(&image, &skip()).unwrap(), Plan::Pinned, "{image}");
        }
    }

    #[test]
    fn skipped_registries_keep_their_tag() {
        let table = [
            ("localhost/flint-examples/hello-python:dev", "localhost"),
            ("localhost:5000/app:1", "localhost:5000"),
            ("ko.local/app", "ko.local"),
            ("kind.local/app:x", "kind.local"),
        ];
        for (image, registry) in table {
            assert_eq!(
                plan(image, &skip()).unwrap(),
                Plan::Skipped {
                    registry: registry.to_owned()
                },
                "{image}"
            );
        }
        // Not skipped once the list no longer names it.
        let none = RegistryList::new(Vec::<String>::new());
        assert!(matches!(
            plan("localhost/app:dev", &none).unwrap(),
            Plan::Resolve(_)
        ));
    }

    #[test]
    fn an_invalid_reference_is_refused_with_the_image_named() {
        for image in ["Reg.Example/App:1", "app:bad tag", "app@sha256:short", ""] {
            let error = plan(image, &skip()).unwrap_err();
            assert_eq!(error.image, image);
            assert!(error.to_string().contains(&format!("{image:?}")), "{error}");
        }
    }
}
