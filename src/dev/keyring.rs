//! `flint dev`'s keyring: a Function's keys from a file next to its
//! manifest or from an environment variable, its `jwksFile` from disk, and
//! for `spec.tls` a self-signed certificate made on demand for the hosts
//! that ask for TLS (plus `localhost` and `*.localhost`). Files are watched
//! by modification time, so a rotated key takes effect on the next rescan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use flint_api::backend::FunctionKey;
use flint_api::function::KeySource;
use flint_api::sync::lock;
use flint_runtime::gateway::keyring::{CertPem, Keyring, KeyringError};
use flint_runtime::gateway::tls;

use super::loader::Loaded;

/// A self-signed certificate and the hosts it was made for.
type Minted = (Vec<String>, (Vec<u8>, Vec<u8>));

/// Keys and certificates of the Functions `flint dev` serves.
#[derive(Debug, Default)]
pub struct DevKeyring {
    /// Each Function's manifest directory, which its files are relative to.
    dirs: Mutex<HashMap<FunctionKey, PathBuf>>,
    /// Modification times of the files read, to notice changes.
    seen: Mutex<HashMap<PathBuf, Option<SystemTime>>>,
    minted: Mutex<Option<Minted>>,
}

impl DevKeyring {
    /// Learns where the loaded Functions' manifests live.
    pub fn set_functions(&self, functions: &[Loaded]) {
        let dirs = functions
            .iter()
            .map(|l| {
                let key = FunctionKey::new(
                    l.function.metadata.namespace.clone().unwrap_or_default(),
                    l.function.metadata.name.clone().unwrap_or_default(),
                );
                let dir = l.path.parent().map_or_else(PathBuf::new, Path::to_path_buf);
                (key, dir)
            })
            .collect();
        *lock(&self.dirs) = dirs;
    }

    /// Whether a file read before has changed (or appeared, or gone)
    /// since; the gates are then rebuilt.
    pub fn files_changed(&self) -> bool {
        let seen = lock(&self.seen);
        seen.iter().any(|(path, when)| modified(path) != *when)
    }

    fn read(&self, function: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError> {
        let dir = lock(&self.dirs).get(function).cloned().unwrap_or_default();
        let full = dir.join(path);
        lock(&self.seen).insert(full.clone(), modified(&full));
        std::fs::read(&full).map_err(|e| KeyringError::File {
            path: full.display().to_string(),
            reason: e.to_string(),
        })
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Keyring for DevKeyring {
    fn values(
        &self,
        function: &FunctionKey,
        source: &KeySource,
    ) -> Result<Vec<Vec<u8>>, KeyringError> {
        if let Some(path) = &source.file {
            let text = self.read(function, path)?;
            return Ok(text
                .split(|b| *b == b'\n')
                .map(|line| line.trim_ascii().to_vec())
                .filter(|line| !line.is_empty())
                .collect());
        }
        if let Some(name) = &source.env {
            let value = std::env::var(name).map_err(|_| KeyringError::Env(name.clone()))?;
            return Ok(value
                .split(',')
                .map(|v| v.trim().as_bytes().to_vec())
                .filter(|v| !v.is_empty())
                .collect());
        }
        Err(KeyringError::Unsupported(
            "flint dev reads keys from a file or env; secretName is read on clusters only"
                .to_owned(),
        ))
    }

    fn file(&self, function: &FunctionKey, path: &str) -> Result<Vec<u8>, KeyringError> {
        self.read(function, path)
    }

    fn tls(&self, namespace: &str, name: &str) -> Result<CertPem, KeyringError> {
        // flint dev serves its own certificate for every host that asks.
        Err(KeyringError::SecretNotFound {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        })
    }

    fn default_tls(&self, hosts: &[String]) -> Option<Result<CertPem, KeyringError>> {
        let mut names: Vec<String> = vec!["localhost".to_owned(), "*.localhost".to_owned()];
        names.extend(hosts.iter().cloned());
        names.sort();
        names.dedup();
        let mut minted = lock(&self.minted);
        if let Some((made_for, pem)) = minted.as_ref()
            && *made_for == names
        {
            return Some(Ok(pem.clone()));
        }
        let made = tls::self_signed(&names)
            .map(|(cert, key)| (cert.into_bytes(), key.into_bytes()))
            .map_err(|e| {
                KeyringError::Unsupported(format!("making a self-signed certificate: {e}"))
            });
        if let Ok(pem) = &made {
            *minted = Some((names, pem.clone()));
        }
        Some(made)
    }
}
