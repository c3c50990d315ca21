//! Registry credentials from the Secrets a Function names in
//! `imagePullSecrets`: the same `kubernetes.io/dockerconfigjson` Secrets the
//! kubelet pulls with. Pure: the caller reads the Secrets.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use k8s_openapi::api::core::v1::Secret;
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;

/// The only Secret type read for credentials.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The key of such a Secret that holds the Docker config.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";

/// Names Docker Hub goes by in a Docker config.
const DOCKER_HUB: &[&str] = &["docker.io", "index.docker.io", "registry-1.docker.io"];

/// Why a Secret named in `imagePullSecrets` gives no credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The Secret has another type than `kubernetes.io/dockerconfigjson`.
    #[error(
        "imagePullSecret {secret:?} has type {type_:?}; only {DOCKER_CONFIG_JSON_TYPE} Secrets hold registry credentials"
    )]
    WrongType {
        /// The Secret's name.
        secret: String,
        /// Its type.
        type_: String,
    },
    /// The Secret has no `.dockerconfigjson` key.
    #[error("imagePullSecret {secret:?} has no {DOCKER_CONFIG_JSON_KEY} key")]
    MissingKey {
        /// The Secret's name.
        secret: String,
    },
    /// `.dockerconfigjson` is not a Docker config.
    #[error(
        "imagePullSecret {secret:?}: {DOCKER_CONFIG_JSON_KEY} is not a Docker config (JSON with \"auths\"): {source}"
    )]
    NotDockerConfig {
        /// The Secret's name.
        secret: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The entry for the registry has an `auth` that is not base64 of `user:password`.
    #[error("imagePullSecret {secret:?}: the \"auth\" of {key:?} is not base64 of user:password")]
    BadAuth {
        /// The Secret's name.
        secret: String,
        /// The key of the entry in `auths`.
        key: String,
    },
}

/// `.dockerconfigjson`: credentials per registry.
#[derive(Deserialize)]
struct DockerConfig {
    auths: BTreeMap<String, AuthEntry>,
}

/// One registry's entry of a Docker config.
#[derive(Deserialize, Default)]
#[serde(default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    registrytoken: Option<String>,
}

/// The credentials for `registry` (as in the image reference) from
/// `secrets`, in the order the Function names them: the first Secret with an
/// entry for the registry wins, as with the kubelet. Anonymous when none has
/// one (public images need no Secret). A Secret that is not a Docker config
/// is an error naming it, even when another would have matched: the
/// Function names it, so it is meant to be one.
pub fn registry_auth(registry: &str, secrets: &[Secret]) -> Result<RegistryAuth, CredentialError> {
    let wanted = aliases(registry);
    for secret in secrets {
        let config = docker_config(secret)?;
        let name = secret_name(secret);
        let entry = config
            .auths
            .iter()
            .find(|(key, _)| wanted.contains(&normalize(key)));
        if let Some((key, entry)) = entry {
            return auth_of(entry).ok_or_else(|| CredentialError::BadAuth {
                secret: name,
                key: key.clone(),
            });
        }
    }
    Ok(RegistryAuth::Anonymous)
}

fn secret_name(secret: &Secret) -> String {
    secret.metadata.name.clone().unwrap_or_default()
}

/// The Docker config of a `kubernetes.io/dockerconfigjson` Secret.
fn docker_config(secret: &Secret) -> Result<DockerConfig, CredentialError> {
    let name = secret_name(secret);
    let type_ = secret.type_.as_deref().unwrap_or("Opaque");
    if type_ != DOCKER_CONFIG_JSON_TYPE {
        return Err(CredentialError::WrongType {
            secret: name,
            type_: type_.to_owned(),
        });
    }
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(DOCKER_CONFIG_JSON_KEY))
        .ok_or_else(|| CredentialError::MissingKey {
            secret: name.clone(),
        })?;
    serde_json::from_slice(&bytes.0).map_err(|source| CredentialError::NotDockerConfig {
        secret: name,
        source,
    })
}

/// An entry's credentials: `username`/`password`, else `auth` (base64 of
/// `user:password`), else a `registrytoken` (a bearer token). `None` when
/// `auth` is malformed. An entry with nothing is anonymous.
fn auth_of(entry: &AuthEntry) -> Option<RegistryAuth> {
    if let (Some(user), Some(password)) = (&entry.username, &entry.password) {
        return Some(RegistryAuth::Basic(user.clone(), password.clone()));
    }
    if let Some(auth) = &entry.auth {
        let decoded = STANDARD.decode(auth.trim()).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        return Some(RegistryAuth::Basic(user.to_owned(), password.to_owned()));
    }
    if let Some(token) = &entry.registrytoken {
        return Some(RegistryAuth::Bearer(token.clone()));
    }
    Some(RegistryAuth::Anonymous)
}

/// A Docker config key as a bare `host[:port]`: the scheme and any path
/// (`https://index.docker.io/v1/`) dropped, lowercased.
fn normalize(key: &str) -> String {
    let key = key
        .trim()
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    key.split('/').next().unwrap_or(key).to_ascii_lowercase()
}

/// The keys an entry for `registry` may have: Docker Hub goes by several names.
fn aliases(registry: &str) -> Vec<String> {
    let registry = registry.to_ascii_lowercase();
    if DOCKER_HUB.contains(&registry.as_str()) {
        DOCKER_HUB.iter().map(|h| (*h).to_owned()).collect()
    } else {
        vec![registry]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    fn secret(name: &str, type_: &str, config: Option<serde_json::Value>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                ..ObjectMeta::default()
            },
            type_: Some(type_.to_owned()),
            data: config.map(|c| {
                BTreeMap::from([(
                    DOCKER_CONFIG_JSON_KEY.to_owned(),
                    ByteString(c.to_string().into_bytes()),
                )])
            }),
            ..Secret::default()
        }
    }

    fn config(name: &str, auths: serde_json::Value) -> Secret {
        secret(
            name,
            DOCKER_CONFIG_JSON_TYPE,
            Some(json!({ "auths": auths })),
        )
    }

    fn basic(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.to_owned(), password.to_owned())
    }

    #[test]
    fn the_first_secret_with_the_registry_wins() {
        let secrets = [
            config(
                "other",
                json!({"ghcr.io": {"username": "g", "password": "p"}}),
            ),
            config(
                "reg",
                json!({"https://reg.example:5000/v2/": {"auth": STANDARD.encode("alice:s3:cret")}}),
            ),
            config(
                "late",
                json!({"reg.example:5000": {"username": "bob", "password": "x"}}),
            ),
        ];
        assert_eq!(
            registry_auth("reg.example:5000", &secrets).unwrap(),
            basic("alice", "s3:cret")
        );
        assert_eq!(registry_auth("ghcr.io", &secrets).unwrap(), basic("g", "p"));
        assert_eq!(
            registry_auth("reg.example", &secrets).unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn docker_hub_matches_by_any_of_its_names() {
        let secrets = [config(
            "hub",
            json!({"https://index.docker.io/v1/": {"username": "u", "password": "p"}}),
        )];
        assert_eq!(
            registry_auth("docker.io", &secrets).unwrap(),
            basic("u", "p")
        );
        let token = [config("t", json!({"docker.io": {"registrytoken": "tok"}}))];
        assert_eq!(
            registry_auth("docker.io", &token).unwrap(),
            RegistryAuth::Bearer("tok".to_owned())
        );
    }

    #[test]
    fn no_secret_means_anonymous() {
        assert_eq!(
            registry_auth("reg.example", &[]).unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn a_bad_secret_is_refused_with_its_name() {
        let cases: Vec<(Secret, &str)> = vec![
            (
                secret("opaque", "Opaque", Some(json!({}))),
                "imagePullSecret \"opaque\" has type \"Opaque\"",
            ),
            (
                secret("empty", DOCKER_CONFIG_JSON_TYPE, None),
                "imagePullSecret \"empty\" has no .dockerconfigjson key",
            ),
            (
                secret("noauths", DOCKER_CONFIG_JSON_TYPE, Some(json!({"x": 1}))),
                "imagePullSecret \"noauths\": .dockerconfigjson is not a Docker config",
            ),
            (
                config("bad", json!({"reg.example": {"auth": "not base64!"}})),
                "imagePullSecret \"bad\": the \"auth\" of \"reg.example\" is not base64",
            ),
            (
                config(
                    "nocolon",
                    json!({"reg.example": {"auth": STANDARD.encode("alice")}}),
                ),
                "imagePullSecret \"nocolon\": the \"auth\" of \"reg.example\"",
            ),
        ];
        for (secret, want) in cases {
            let error = registry_auth("reg.example", &[secret]).unwrap_err();
            assert!(error.to_string().starts_with(want), "{error}");
        }
    }
}
