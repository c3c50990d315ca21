//! Custom domains (`spec.domains`): what a domain entry means (a host and
//! an optional path prefix) and who owns it when two Functions claim the
//! same one. The gateway routes by [`claims`], the operator reports its
//! conflicts on the later Function's status and `flint dev` prints them, so
//! all three agree on the winner: the Function created first (then the
//! smaller namespace/name), never the one applied last.

use std::collections::HashMap;

use crate::backend::FunctionKey;
use crate::names;

/// One entry of `spec.domains`, split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Domain<'a> {
    /// The host, lowercase, without a port.
    pub host: &'a str,
    /// The path prefix without its trailing '/', when the entry has one
    /// (`/orders` for `example.com/orders/`); `None` claims the whole host.
    pub prefix: Option<&'a str>,
}

impl<'a> Domain<'a> {
    /// Splits an entry into host and path prefix, or says what is wrong
    /// with it.
    pub fn parse(entry: &'a str) -> Result<Self, String> {
        if entry.len() > MAX_DOMAIN_LEN {
            return Err(format!("must be at most {MAX_DOMAIN_LEN} characters"));
        }
        let (host, path) = match entry.find('/') {
            Some(i) => (&entry[..i], Some(&entry[i..])),
            None => (entry, None),
        };
        let labels: Vec<&str> = host.split('.').collect();
        let last = labels.last().copied().unwrap_or_default();
        if labels.len() < 2
            || !names::is_dns1123_subdomain(host)
            || !last.starts_with(|c: char| c.is_ascii_lowercase())
        {
            return Err(format!(
                "{host:?} must be a lowercase DNS name of at least two labels (e.g. api.example.com)"
            ));
        }
        let prefix = match path.map(|p| p.trim_end_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                let bad = p[1..].split('/').find(|seg| {
                    seg.is_empty()
                        || seg.bytes().all(|b| b == b'.')
                        || !seg
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"._~-".contains(&b))
                });
                if let Some(seg) = bad {
                    return Err(format!(
                        "path segment {seg:?} must be letters, digits, '.', '_', '~' or '-', and not '.' or '..'"
                    ));
                }
                Some(p)
            }
        };
        Ok(Self { host, prefix })
    }

    /// Whether `path` falls under this domain's prefix (segment-wise: the
    /// prefix `/orders` takes `/orders` and `/orders/1`, not `/ordersx`).
    pub fn matches_path(&self, path: &str) -> bool {
        self.prefix.is_none_or(|p| {
            path.strip_prefix(p).is_some_and(|rest| {
                rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')
            })
        })
    }
}

/// Longest domain entry (host and path prefix).
pub const MAX_DOMAIN_LEN: usize = 512;

/// One Function's claim on its domains, as [`claims`] weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimant<'a> {
    /// The Function.
    pub function: FunctionKey,
    /// When it was created (RFC 3339, as the API server writes it; compared
    /// as text, which orders such timestamps correctly). `None` counts as
    /// newest: a Function not yet stored by the API server.
    pub created: Option<&'a str>,
    /// Its `spec.domains`.
    pub domains: &'a [String],
}

/// A domain a Function asked for but does not get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The Function that does not get it.
    pub function: FunctionKey,
    /// The entry, as written.
    pub domain: String,
    /// Why: the owner, or that the host is the platform's own.
    pub reason: ConflictReason,
}

/// Why a domain is not routed to a Function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflictReason {
    /// Another Function claimed it first.
    ClaimedBy(FunctionKey),
    /// It is under the platform's domain, where hosts are
    /// `<function>.<namespace>.<domain>` and belong to their Functions.
    PlatformDomain(String),
}

impl std::fmt::Display for Conflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.reason {
            ConflictReason::ClaimedBy(owner) => write!(
                f,
                "domain {} is already claimed by Function {owner}, created earlier",
                self.domain
            ),
            ConflictReason::PlatformDomain(domain) => write!(
                f,
                "domain {} is under the platform domain {domain}, whose hosts belong to their Functions",
                self.domain
            ),
        }
    }
}

/// Who gets each domain: the winner of every (host, prefix) and the
/// conflicts of the others. Entries that do not parse are left out (the
/// API refuses them).
pub fn claims<'a>(
    functions: &[Claimant<'a>],
    platform_domain: &str,
) -> (HashMap<Domain<'a>, FunctionKey>, Vec<Conflict>) {
    let mut order: Vec<&Claimant<'a>> = functions.iter().collect();
    order.sort_by(|a, b| {
        (a.created.is_none(), a.created, &a.function).cmp(&(
            b.created.is_none(),
            b.created,
            &b.function,
        ))
    });
    let suffix = format!(".{platform_domain}");
    let mut owners: HashMap<Domain<'a>, FunctionKey> = HashMap::new();
    let mut conflicts = Vec::new();
    for claimant in order {
        for entry in claimant.domains {
            let Ok(domain) = Domain::parse(entry) else {
                continue;
            };
            let conflict = |reason| Conflict {
                function: claimant.function.clone(),
                domain: entry.clone(),
                reason,
            };
            if domain.host == platform_domain || domain.host.ends_with(&suffix) {
                conflicts.push(conflict(ConflictReason::PlatformDomain(
                    platform_domain.to_owned(),
                )));
                continue;
            }
            match owners.get(&domain) {
                Some(owner) if *owner != claimant.function => {
                    conflicts.push(conflict(ConflictReason::ClaimedBy(owner.clone())));
                }
                Some(_) => {}
                None => {
                    owners.insert(domain, claimant.function.clone());
                }
            }
        }
    }
    conflicts.sort_by(|a, b| (&a.function, &a.domain).cmp(&(&b.function, &b.domain)));
    (owners, conflicts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claimant<'a>(
        ns: &str,
        name: &str,
        created: Option<&'a str>,
        domains: &'a [String],
    ) -> Claimant<'a> {
        Claimant {
            function: FunctionKey::new(ns, name),
            created,
            domains,
        }
    }

    #[test]
    fn parse_splits_host_and_prefix() {
        assert_eq!(
            Domain::parse("api.example.com").unwrap(),
            Domain {
                host: "api.example.com",
                prefix: None
            }
        );
        assert_eq!(
            Domain::parse("example.com/orders/").unwrap(),
            Domain {
                host: "example.com",
                prefix: Some("/orders")
            }
        );
        assert_eq!(Domain::parse("example.com/").unwrap().prefix, None);
        for bad in [
            "localhost",
            "API.example.com",
            "example.com/../x",
            "example.com/a//b",
            "a.1",
            "-a.example.com",
            "example.com/a b",
        ] {
            assert!(Domain::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn prefixes_match_by_segment() {
        let d = Domain::parse("example.com/orders").unwrap();
        assert!(d.matches_path("/orders"));
        assert!(d.matches_path("/orders/7"));
        assert!(!d.matches_path("/ordersx"));
        assert!(!d.matches_path("/"));
        assert!(
            Domain::parse("example.com")
                .unwrap()
                .matches_path("/anything")
        );
    }

    #[test]
    fn the_first_created_wins_and_the_later_is_reported() {
        let a = vec!["api.example.com".to_owned(), "example.com/a".to_owned()];
        let b = vec!["api.example.com".to_owned(), "example.com/b".to_owned()];
        // b is applied later but listed first: order of the list must not matter.
        let fns = [
            claimant("team", "b", Some("2026-01-02T00:00:00Z"), &b),
            claimant("team", "a", Some("2026-01-01T00:00:00Z"), &a),
        ];
        let (owners, conflicts) = claims(&fns, "flint.example");
        assert_eq!(
            owners[&Domain::parse("api.example.com").unwrap()],
            FunctionKey::new("team", "a")
        );
        assert_eq!(
            owners[&Domain::parse("example.com/b").unwrap()],
            FunctionKey::new("team", "b")
        );
        assert_eq!(conflicts.len(), 1);
        assert_eq!(conflicts[0].function, FunctionKey::new("team", "b"));
        assert_eq!(
            conflicts[0].to_string(),
            "domain api.example.com is already claimed by Function team/a, created earlier"
        );
    }

    #[test]
    fn a_function_not_yet_created_loses_and_ties_go_by_name() {
        let d = vec!["x.example.com".to_owned()];
        let fns = [
            claimant("ns", "new", None, &d),
            claimant("ns", "zed", Some("2026-01-01T00:00:00Z"), &d),
            claimant("ns", "abe", Some("2026-01-01T00:00:00Z"), &d),
        ];
        let (owners, conflicts) = claims(&fns, "flint.example");
        assert_eq!(owners.values().next(), Some(&FunctionKey::new("ns", "abe")));
        let losers: Vec<_> = conflicts
            .iter()
            .map(|c| c.function.function.as_str())
            .collect();
        assert_eq!(losers, ["new", "zed"]);
    }

    #[test]
    fn platform_hosts_cannot_be_claimed() {
        let d = vec![
            "other.team.flint.example".to_owned(),
            "flint.example".to_owned(),
        ];
        let fns = [claimant("ns", "f", Some("2026-01-01T00:00:00Z"), &d)];
        let (owners, conflicts) = claims(&fns, "flint.example");
        assert!(owners.is_empty());
        assert_eq!(conflicts.len(), 2);
        assert!(matches!(
            conflicts[0].reason,
            ConflictReason::PlatformDomain(_)
        ));
    }

    #[test]
    fn the_same_host_with_different_prefixes_is_no_conflict() {
        let a = vec!["example.com/a".to_owned()];
        let b = vec!["example.com".to_owned()];
        let fns = [
            claimant("ns", "a", Some("2026-01-01T00:00:00Z"), &a),
            claimant("ns", "b", Some("2026-01-02T00:00:00Z"), &b),
        ];
        let (owners, conflicts) = claims(&fns, "flint.example");
        assert_eq!(owners.len(), 2);
        assert!(conflicts.is_empty());
    }
}
