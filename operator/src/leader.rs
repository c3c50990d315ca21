//! Leader election on a coordination.k8s.io Lease, so that of several
//! operator replicas exactly one reconciles and autoscales. The decision
//! (create, renew, take over, follow) is a pure function of the Lease and the
//! clock; the loop around it reads and writes the Lease with optimistic
//! concurrency (a stale write gets 409 and loses).

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaderConfig {
    /// Name of the Lease.
    pub lease_name: String,
    /// Namespace of the Lease.
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease holds without renewal before others may take it.
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal; shorter
    /// than `lease_duration`, so it stops before anyone else can start.
    pub renew_deadline: Duration,
    /// Time between attempts to acquire or renew.
    pub retry_period: Duration,
}

/// Errors talking to the API server about the Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    /// Reading the Lease failed.
    #[error("reading lease {name:?}: {source}")]
    Read {
        /// Lease name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// Writing the Lease failed for a reason other than losing a race.
    #[error("writing lease {name:?}: {source}")]
    Write {
        /// Lease name.
        name: String,
        /// The API error.
        source: kube::Error,
    },
    /// The API server did not answer a round (or a release) in time.
    #[error("lease {name:?}: no answer from the API server within {after:?}")]
    Timeout {
        /// Lease name.
        name: String,
        /// How long the round was given.
        after: Duration,
    },
}

/// What to do with the Lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaseDecision {
    /// No Lease exists: create it, holding it.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it over.
    TakeOver,
    /// Someone else holds it and it has not expired.
    Follow {
        /// The current holder.
        holder: String,
    },
}

/// Whether this replica leads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    /// The Lease has not been read yet.
    Unknown,
    /// This replica holds the Lease and may act.
    Leading,
    /// Another replica holds it (or the Lease cannot be renewed).
    Following,
}

/// Decides what to do with `lease` (None: it does not exist) at `now`.
pub fn decide(lease: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseDecision {
    let Some(spec) = lease else {
        return LeaseDecision::Create;
    };
    let holder = spec.holder_identity.as_deref().unwrap_or_default();
    if holder == identity {
        return LeaseDecision::Renew;
    }
    if holder.is_empty() {
        return LeaseDecision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let last = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    match last {
        Some(renewed) if renewed + duration > now => LeaseDecision::Follow {
            holder: holder.to_owned(),
        },
        _ => LeaseDecision::TakeOver,
    }
}

/// Campaigns for the Lease and keeps it.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaderConfig,
}

impl LeaderElector {
    /// An elector using `client`.
    pub fn new(client: kube::Client, config: LeaderConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    fn held_spec(&self, previous: Option<&LeaseSpec>, now: Timestamp, takeover: bool) -> LeaseSpec {
        let transitions = previous.and_then(|p| p.lease_transitions).unwrap_or(0);
        LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: if takeover || previous.is_none() {
                Some(MicroTime(now))
            } else {
                previous.and_then(|p| p.acquire_time.clone())
            },
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(if takeover {
                transitions + 1
            } else {
                transitions
            }),
            ..LeaseSpec::default()
        }
    }

    /// The Lease as it is now, if it exists.
    async fn read(&self) -> Result<Option<Lease>, LeaderError> {
        let name = &self.config.lease_name;
        self.api
            .get_opt(name)
            .await
            .map_err(|source| LeaderError::Read {
                name: name.clone(),
                source,
            })
    }

    /// One round: reads the Lease and acquires or renews it if it may.
    /// Returns whether this replica holds it afterwards; losing a write race
    /// (409) is not an error, just `false`.
    pub async fn try_acquire_or_renew(&self, now: Timestamp) -> Result<bool, LeaderError> {
        let name = &self.config.lease_name;
        let current = self.read().await?;
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let write = match decide(spec, &self.config.identity, now) {
            LeaseDecision::Follow { .. } => return Ok(false),
            LeaseDecision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(self.config.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.held_spec(None, now, false)),
                };
                self.api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
            decision @ (LeaseDecision::Renew | LeaseDecision::TakeOver) => {
                let mut lease = current.clone().unwrap_or_default();
                lease.spec = Some(self.held_spec(spec, now, decision == LeaseDecision::TakeOver));
                // metadata.resourceVersion is kept: a concurrent writer makes this a 409.
                self.api
                    .replace(name, &PostParams::default(), &lease)
                    .await
                    .map(|_| ())
            }
        };
        match write {
            Ok(()) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(source) => Err(LeaderError::Write {
                name: name.clone(),
                source,
            }),
        }
    }

    /// `work`, or a timeout error if it takes longer than `budget`; with no
    /// budget left, `work` is not started (no request is made).
    async fn bounded<T>(
        &self,
        budget: Duration,
        work: impl Future<Output = Result<T, LeaderError>>,
    ) -> Result<T, LeaderError> {
        if budget.is_zero() {
            return Err(LeaderError::Timeout {
                name: self.config.lease_name.clone(),
                after: budget,
            });
        }
        tokio::time::timeout(budget, work)
            .await
            .unwrap_or_else(|_| {
                Err(LeaderError::Timeout {
                    name: self.config.lease_name.clone(),
                    after: budget,
                })
            })
    }

    /// Gives the Lease up (on shutdown), so another replica takes over at
    /// once instead of after `lease_duration`.
    pub async fn release(&self) -> Result<(), LeaderError> {
        let name = &self.config.lease_name;
        let current = self.read().await?;
        let Some(mut lease) = current else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        self.api
            .replace(name, &PostParams::default(), &lease)
            .await
            .map(|_| ())
            .map_err(|source| LeaderError::Write {
                name: name.clone(),
                source,
            })
    }

    /// Campaigns until `shutdown` turns true, publishing the leadership on
    /// `leadership`. A leader that cannot renew for `renew_deadline` steps
    /// down, also when the API server does not answer: each round gets what
    /// is left of the deadline. On shutdown a leader releases the Lease,
    /// giving that at most `renew_deadline`.
    ///
    /// The renew deadline and retry period are measured on tokio's clock
    /// (the same monotonic clock outside tests), so tests can drive the loop
    /// with a paused clock; the Lease times written are wall-clock times.
    pub async fn run(
        self,
        leadership: watch::Sender<Leadership>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut last_renewal: Option<Instant> = None;
        loop {
            // A round may take at most what is left of the renew deadline: a
            // request the API server never answers must not keep a leader
            // acting after another replica may have taken the Lease.
            let budget = last_renewal.map_or(self.config.renew_deadline, |t| {
                self.config.renew_deadline.saturating_sub(t.elapsed())
            });
            let round = self.bounded(budget, self.try_acquire_or_renew(Timestamp::now()));
            let leading = match round.await {
                Ok(true) => {
                    last_renewal = Some(Instant::now());
                    true
                }
                Ok(false) => false,
                Err(error) => {
                    warn!(error = %error, "lease round failed");
                    last_renewal.is_some_and(|t| t.elapsed() < self.config.renew_deadline)
                }
            };
            if !leading {
                last_renewal = None;
            }
            let state = if leading {
                Leadership::Leading
            } else {
                Leadership::Following
            };
            leadership.send_if_modified(|current| {
                let changed = *current != state;
                if changed {
                    info!(identity = %self.config.identity, lease = %self.config.lease_name, ?state, "leadership changed");
                }
                *current = state;
                changed
            });
            tokio::select! {
                () = tokio::time::sleep(self.config.retry_period) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        let leading = *leadership.borrow() == Leadership::Leading;
        if leading
            && let Err(error) = self
                .bounded(self.config.renew_deadline, self.release())
                .await
        {
            warn!(error = %error, "releasing the lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    fn spec(holder: Option<&str>, renewed: Option<i64>, duration: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            renew_time: renewed.map(|s| MicroTime(ts(s))),
            lease_duration_seconds: Some(duration),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn decisions() {
        let follow = |h: &str| LeaseDecision::Follow {
            holder: h.to_owned(),
        };
        let cases = [
            (None, 100, LeaseDecision::Create),
            (
                Some(spec(Some("me"), Some(0), 15)),
                100,
                LeaseDecision::Renew,
            ),
            (Some(spec(None, Some(95), 15)), 100, LeaseDecision::TakeOver),
            (
                Some(spec(Some(""), Some(95), 15)),
                100,
                LeaseDecision::TakeOver,
            ),
            (
                Some(spec(Some("other"), Some(90), 15)),
                100,
                follow("other"),
            ),
            (
                Some(spec(Some("other"), Some(85), 15)),
                100,
                LeaseDecision::TakeOver,
            ),
            (
                Some(spec(Some("other"), Some(84), 15)),
                100,
                LeaseDecision::TakeOver,
            ),
            (
                Some(spec(Some("other"), Some(86), 15)),
                100,
                follow("other"),
            ),
            (
                Some(spec(Some("other"), None, 15)),
                100,
                LeaseDecision::TakeOver,
            ),
        ];
        for (i, (lease, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(lease.as_ref(), "me", ts(now)), want, "case {i}");
        }
    }
}
