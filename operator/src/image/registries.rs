//! Lists of registries named by host, with or without a port: the registries
//! whose tags are not resolved (local and test registries a cluster loads
//! images into without a registry) and those spoken to over plain HTTP.

use std::fmt;

/// Registries whose tags are left as written by default: Knative's
/// `kind.local`, `ko.local` and `dev.local`, plus `localhost`, where images
/// loaded straight into the nodes' container runtime (`ctr import`,
/// `kind load`) live with no registry to ask.
pub const DEFAULT_SKIP_REGISTRIES: &[&str] = &["kind.local", "ko.local", "dev.local", "localhost"];

/// A list of registries. An entry `host:port` matches that registry only;
/// an entry `host` matches the host on any port; `*` matches every registry.
/// Hosts compare case-insensitively, as DNS names do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryList(Vec<String>);

impl RegistryList {
    /// A list of the given entries; blank entries are dropped and the rest
    /// trimmed, so a comma-separated flag may carry spaces.
    pub fn new<I, S>(entries: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        Self(
            entries
                .into_iter()
                .map(|e| e.as_ref().trim().to_ascii_lowercase())
                .filter(|e| !e.is_empty())
                .collect(),
        )
    }

    /// The default skip list, [`DEFAULT_SKIP_REGISTRIES`].
    pub fn default_skip() -> Self {
        Self::new(DEFAULT_SKIP_REGISTRIES)
    }

    /// Whether `registry` (`host` or `host:port`, as in an image reference)
    /// is on the list.
    pub fn contains(&self, registry: &str) -> bool {
        let registry = registry.to_ascii_lowercase();
        let host = host_of(&registry);
        self.0
            .iter()
            .any(|entry| entry == "*" || *entry == registry || (!has_port(entry) && entry == host))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for RegistryList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(","))
    }
}

/// Whether a `host[:port]` names a port. An IPv6 host is bracketed
/// (`[::1]:5000`), so its own colons do not count.
fn has_port(registry: &str) -> bool {
    host_of(registry).len() != registry.len()
}

/// The host of a `host[:port]`.
fn host_of(registry: &str) -> &str {
    match registry.rfind(':') {
        Some(i) if !registry[i..].contains(']') => &registry[..i],
        _ => registry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_match_by_host_and_port() {
        let list = RegistryList::new(["localhost", " reg.example:5000 ", "", "[::1]:5000"]);
        let table = [
            ("localhost", true),
            ("localhost:5000", true),
            ("LOCALHOST:1", true),
            ("reg.example:5000", true),
            ("reg.example", false),
            ("reg.example:5001", false),
            ("localhost.example", false),
            ("[::1]:5000", true),
            ("[::1]", false),
            ("docker.io", false),
        ];
        for (registry, want) in table {
            assert_eq!(list.contains(registry), want, "{registry}");
        }
    }

    #[test]
    fn a_star_matches_every_registry_and_the_default_skips_local_ones() {
        assert!(RegistryList::new(["*"]).contains("ghcr.io"));
        let skip = RegistryList::default_skip();
        for local in [
            "kind.local",
            "ko.local",
            "dev.local",
            "localhost",
            "localhost:5000",
        ] {
            assert!(skip.contains(local), "{local}");
        }
        assert!(!skip.contains("docker.io"));
        assert!(!RegistryList::new(Vec::<String>::new()).contains("localhost"));
        assert_eq!(skip.to_string(), "kind.local,ko.local,dev.local,localhost");
    }
}
