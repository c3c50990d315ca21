//! Resolving `spec.traffic` to concrete revisions (`status.traffic`), which is
//! what the gateway routes by. `latestRevision: true` means the latest READY
//! revision, so a new revision takes traffic only once it has proven itself.

use flint_api::{TrafficStatus, TrafficTarget};

use super::revision::ExistingRevision;

/// Why `spec.traffic` cannot be resolved. The previous `status.traffic` then
/// stays in force, so a bad change never takes traffic from a working revision.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrafficError {
    /// Revisions named in `spec.traffic` do not exist.
    #[error("spec.traffic names revisions that do not exist: {}", .0.join(", "))]
    TargetNotFound(Vec<String>),
    /// A target follows the latest ready revision and no revision is ready yet.
    #[error("no revision is ready yet to take the latestRevision traffic")]
    NoReadyRevision,
}

/// The default when `spec.traffic` is empty: 100% to the latest ready revision.
fn default_targets() -> Vec<TrafficTarget> {
    vec![TrafficTarget {
        revision: None,
        latest_revision: Some(true),
        percent: 100,
        tag: None,
    }]
}

/// Resolves `targets` against the revisions that exist. `latest_ready` is the
/// revision `latestRevision: true` stands for. Tagged URLs are left empty:
/// they depend on the cluster domain and are filled in by the status step.
pub fn resolve(
    targets: &[TrafficTarget],
    existing: &[ExistingRevision],
    latest_ready: Option<&str>,
) -> Result<Vec<TrafficStatus>, TrafficError> {
    let defaults;
    let targets = if targets.is_empty() {
        defaults = default_targets();
        &defaults
    } else {
        targets
    };
    let missing: Vec<String> = targets
        .iter()
        .filter_map(|t| t.revision.as_ref())
        .filter(|name| !existing.iter().any(|r| &r.name == *name))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(TrafficError::TargetNotFound(missing));
    }
    targets
        .iter()
        .map(|t| {
            let (revision_name, latest_revision) = match &t.revision {
                Some(name) => (name.clone(), false),
                None => (
                    latest_ready
                        .ok_or(TrafficError::NoReadyRevision)?
                        .to_owned(),
                    true,
                ),
            };
            Ok(TrafficStatus {
                revision_name,
                percent: t.percent,
                latest_revision,
                tag: t.tag.clone(),
                url: None,
            })
        })
        .collect()
}

/// The revision `latestRevision: true` stands for: the latest created one if
/// it is ready, otherwise the newest ready one.
pub fn latest_ready<'a>(
    latest_created: &str,
    existing: &'a [ExistingRevision],
) -> Option<&'a ExistingRevision> {
    existing
        .iter()
        .find(|r| r.name == latest_created && r.is_ready())
        .or_else(|| {
            existing
                .iter()
                .filter(|r| r.is_ready())
                .max_by_key(|r| r.number)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::revision::RevisionHealth;

    fn rev(n: u32, health: RevisionHealth) -> ExistingRevision {
        let mut r = ExistingRevision::new(format!("f-{n:05}"), n, "h");
        r.health = health;
        r
    }

    fn target(revision: Option<&str>, percent: u32, tag: Option<&str>) -> TrafficTarget {
        TrafficTarget {
            revision: revision.map(str::to_owned),
            latest_revision: revision.is_none().then_some(true),
            percent,
            tag: tag.map(str::to_owned),
        }
    }

    #[test]
    fn latest_ready_prefers_the_latest_created_then_the_newest_ready() {
        let failed = RevisionHealth::Failed {
            reason: "RevisionFailed".into(),
            message: "m".into(),
        };
        let revs = [
            rev(1, RevisionHealth::Ready),
            rev(2, RevisionHealth::Ready),
            rev(3, failed),
        ];
        assert_eq!(latest_ready("f-00003", &revs).map(|r| r.number), Some(2));
        assert_eq!(latest_ready("f-00001", &revs).map(|r| r.number), Some(1));
        assert_eq!(latest_ready("f-00004", &revs[2..]), None);
    }

    #[test]
    fn empty_spec_sends_everything_to_the_latest_ready() {
        let revs = [rev(1, RevisionHealth::Ready)];
        assert_eq!(
            resolve(&[], &revs, Some("f-00001")),
            Ok(vec![TrafficStatus {
                revision_name: "f-00001".into(),
                percent: 100,
                latest_revision: true,
                tag: None,
                url: None,
            }])
        );
        assert_eq!(resolve(&[], &[], None), Err(TrafficError::NoReadyRevision));
    }

    #[test]
    fn named_targets_must_exist() {
        let revs = [rev(1, RevisionHealth::Ready)];
        let targets = [
            target(Some("f-00001"), 50, None),
            target(Some("f-00007"), 50, None),
        ];
        assert_eq!(
            resolve(&targets, &revs, Some("f-00001")),
            Err(TrafficError::TargetNotFound(vec!["f-00007".into()]))
        );
    }

    #[test]
    fn named_targets_are_routed_even_without_a_ready_latest() {
        let revs = [
            rev(1, RevisionHealth::Ready),
            rev(2, RevisionHealth::Deploying),
        ];
        let resolved = resolve(&[target(Some("f-00001"), 100, Some("old"))], &revs, None);
        assert_eq!(
            resolved,
            Ok(vec![TrafficStatus {
                revision_name: "f-00001".into(),
                percent: 100,
                latest_revision: false,
                tag: Some("old".into()),
                url: None,
            }])
        );
    }
}
