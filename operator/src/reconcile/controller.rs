//! The reconcile loop: read what exists, compute what should (pure), apply it
//! with server-side apply, write the status, publish Events. One Function per
//! call; a failure requeues that Function alone, with backoff.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flint_api::backend::FunctionKey;
use flint_api::domains::{self, Claimant, Conflict};
use flint_api::names::{FIELD_MANAGER, FINALIZER, LABEL_FUNCTION, LABEL_MANAGED_BY, MANAGED_BY};
use flint_api::sync::lock;
use flint_api::{Function, FunctionStatus};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::{self, Action};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, instrument, warn};

use super::applied::{needs_apply, stamp_all, status_changed};
use super::backoff::backoff_delay;
use super::cache::{Cache, trim_deployment, trim_pod, trim_service};
use super::cleanup::delete_revisions;
use super::condition::{ConditionStatus, ConditionType};
use super::desired::{DesiredState, desired_objects};
use super::error::Error;
use super::metrics::ReconcileMetrics;
use super::notices::{Notice, transitions};
use super::observe;
use super::pin::{ImagePinning, PinError, pin_image};
use super::revision::{ExistingRevision, observe_revisions};
use super::status::{StatusInput, compute_status, with_image_failure};

/// How soon a Function is looked at again while a revision is still deploying
/// or failing (pod changes also trigger a reconcile at once).
pub const REQUEUE_PENDING: Duration = Duration::from_secs(10);
/// How soon a settled Function is looked at again.
pub const REQUEUE_SETTLED: Duration = Duration::from_secs(300);
/// How many Functions are reconciled at once. A settled reconcile sends no
/// request; a new Function sends three writes. Bounded so that a burst of
/// thousands of new Functions queues here rather than at the API server,
/// where it would starve the operator's own Lease renewals.
pub const RECONCILE_CONCURRENCY: u16 = 16;

/// What every reconcile shares.
pub struct Context {
    /// Kubernetes client.
    pub client: Client,
    /// Publishes Events on Functions.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: ReconcileMetrics,
    /// Cluster domain of Function hosts (`<fn>.<ns>.<domain>`).
    pub domain: String,
    /// How new revisions' images are pinned to digests; `None` runs them
    /// as written (tags and all).
    pub images: Option<ImagePinning>,
    /// Consecutive failures per Function (`namespace/name`), for backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// Every Function, as the controller's watch sees them: who else claims
    /// a custom domain. Set when the controller starts.
    functions: std::sync::OnceLock<Store<Function>>,
    /// The Deployments, pods and Services of every Function, fed by the
    /// controller's watches. Set when the controller starts (or by
    /// [`Context::with_cache`]); without it a reconcile lists them.
    cache: std::sync::OnceLock<Arc<Cache>>,
}

impl Context {
    /// A context publishing Events as `reporter`.
    pub fn new(
        client: Client,
        reporter: Reporter,
        metrics: ReconcileMetrics,
        domain: String,
    ) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            domain,
            images: None,
            failures: Mutex::new(HashMap::new()),
            functions: std::sync::OnceLock::new(),
            cache: std::sync::OnceLock::new(),
        }
    }

    /// The same context, reading Functions' objects from `cache` rather
    /// than listing them (what the running controller does, its watches
    /// feeding the cache).
    pub fn with_cache(self, cache: Cache) -> Self {
        // A fresh context: the cell is empty.
        let _ = self.cache.set(Arc::new(cache));
        self
    }

    /// The custom domains `function` asked for but does not get: claimed
    /// first by another Function, or under the platform's domain. Empty
    /// when it lists none, or before the controller's watch has started.
    fn domain_conflicts(&self, function: &Function) -> Vec<Conflict> {
        if function.spec.domains.is_empty() {
            return Vec::new();
        }
        let all = self.functions.get().map(Store::state).unwrap_or_default();
        let others = all
            .iter()
            .map(|f| &**f)
            .filter(|f| !f.spec.domains.is_empty() && f.uid() != function.uid());
        let everyone: Vec<&Function> = others.chain(std::iter::once(function)).collect();
        let created: Vec<Option<String>> = everyone
            .iter()
            .map(|f| {
                f.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
            })
            .collect();
        let claimants: Vec<Claimant<'_>> = everyone
            .iter()
            .zip(&created)
            .map(|(f, created)| Claimant {
                function: FunctionKey::new(f.namespace().unwrap_or_default(), f.name_any()),
                created: created.as_deref(),
                domains: &f.spec.domains,
            })
            .collect();
        let me = FunctionKey::new(
            function.namespace().unwrap_or_default(),
            function.name_any(),
        );
        let (_, conflicts) = domains::claims(&claimants, &self.domain);
        conflicts.into_iter().filter(|c| c.function == me).collect()
    }

    /// The same context, pinning new revisions' images with `pinning`.
    pub fn with_image_pinning(mut self, pinning: ImagePinning) -> Self {
        self.images = Some(pinning);
        self
    }

    fn record_failure(&self, key: String) -> u32 {
        let mut failures = lock(&self.failures);
        let n = failures.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn clear_failures(&self, key: &str) {
        let mut failures = lock(&self.failures);
        failures.remove(key);
    }
}

fn key(function: &Function) -> String {
    format!(
        "{}/{}",
        function.namespace().unwrap_or_default(),
        function.name_any()
    )
}

/// Reconciles one Function. A deleted Function needs nothing from the
/// operator: its revisions' Deployments and Services carry owner references,
/// and the garbage collector removes them — with the operator stopped or
/// uninstalled too, so deleting a Function or its namespace never waits on
/// Flint. A finalizer left by an earlier operator version is removed first.
#[instrument(skip(function, ctx), fields(namespace = function.namespace(), name = %function.name_any(), generation = function.metadata.generation))]
pub async fn reconcile(function: Arc<Function>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    let key = key(&function);
    let result = if holds_legacy_finalizer(&function) {
        release_finalizer(&function, &ctx).await
    } else if function.metadata.deletion_timestamp.is_some() {
        Ok(Action::await_change())
    } else {
        apply(&function, &ctx).await
    };
    ctx.metrics.observe(
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(Error::metric_label),
    );
    if result.is_ok() {
        ctx.clear_failures(&key);
    }
    result
}

/// Whether the Function holds the finalizer earlier operator versions added.
fn holds_legacy_finalizer(function: &Function) -> bool {
    function
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|fs| fs.iter().any(|f| f == FINALIZER))
}

/// Removes the earlier versions' finalizer, keeping any other, at the
/// Function's resource version (a concurrent change is refused, not
/// overwritten). The change comes back as a watch event, which reconciles
/// the Function again.
async fn release_finalizer(function: &Function, ctx: &Context) -> Result<Action, Error> {
    let name = function.name_any();
    let api: Api<Function> = Api::namespaced(
        ctx.client.clone(),
        &function.namespace().unwrap_or_default(),
    );
    let others: Vec<&String> = function
        .metadata
        .finalizers
        .iter()
        .flatten()
        .filter(|f| *f != FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {
            "resourceVersion": function.metadata.resource_version,
            "finalizers": if others.is_empty() { serde_json::Value::Null } else { serde_json::json!(others) },
        }
    });
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::Finalizer {
            function: name.clone(),
            source,
        })?;
    info!(namespace = function.namespace(), name = %name, "removed the finalizer of an earlier operator version");
    Ok(Action::await_change())
}

/// Requeues a failed Function with exponential backoff (per Function).
pub fn error_policy(function: Arc<Function>, error: &Error, ctx: Arc<Context>) -> Action {
    let attempt = ctx.record_failure(key(&function));
    let delay = backoff_delay(attempt);
    warn!(namespace = function.namespace(), name = %function.name_any(), error = %error, attempt, delay_ms = delay.as_millis() as u64, "reconcile failed; requeueing");
    Action::requeue(delay)
}

async fn apply(function: &Function, ctx: &Context) -> Result<Action, Error> {
    let name = function.name_any();
    let namespace = function.namespace().unwrap_or_default();
    let client = &ctx.client;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let uid = function.metadata.uid.as_deref();

    let observed = match ctx.cache.get() {
        Some(cache) => {
            cache.ready().await;
            observe::from_cache(cache, &namespace, &name, uid)
        }
        None => observe::list(&name, uid, &deployments, &pods, &services).await?,
    };
    let existing = observe_revisions(
        &name,
        &observed.deployments,
        &observed.pods,
        function.status.as_ref(),
    );
    let desired = desired_objects(function, &existing)?;
    let (mut desired, held) = pin_new_revision(function, ctx, desired, &existing).await;
    stamp_all(&mut desired);

    let ssa = PatchParams::apply(FIELD_MANAGER).force();
    if let Some(deployment) = &desired.deployment {
        let seen = observed.deployment(&desired.latest.name);
        if needs_apply(seen.map(|d| &d.metadata), &deployment.metadata) {
            deployments
                .patch(&desired.latest.name, &ssa, &Patch::Apply(deployment))
                .await
                .map_err(|source| Error::Apply {
                    kind: "Deployment",
                    name: desired.latest.name.clone(),
                    source,
                })?;
            info!(revision = %desired.latest.name, "created revision");
        }
    }
    for service in &desired.services {
        let svc_name = service.name_any();
        let seen = observed.service(&svc_name);
        if !needs_apply(seen.map(|s| &s.metadata), &service.metadata) {
            continue;
        }
        services
            .patch(&svc_name, &ssa, &Patch::Apply(service))
            .await
            .map_err(|source| Error::Apply {
                kind: "Service",
                name: svc_name.clone(),
                source,
            })?;
    }
    // desired_objects needs the uid: past it, a Function without one never gets here.
    if let Some(uid) = uid {
        delete_revisions(
            uid,
            &deployments,
            &services,
            &observed.deployments,
            &observed.services,
            &desired.delete,
        )
        .await?;
    }

    let now = Timestamp::now();
    let mut status = compute_status(StatusInput {
        function,
        desired: &desired,
        revisions: &existing,
        domain: &ctx.domain,
        domain_conflicts: &ctx.domain_conflicts(function),
        now,
    });
    if let Some(error) = &held {
        status = with_image_failure(status, function, &error.describe(), now);
    }
    if status_changed(function.status.as_ref(), &status) {
        let api: Api<Function> = Api::namespaced(client.clone(), &namespace);
        let patch = serde_json::json!({
            "apiVersion": flint_api::names::API_VERSION,
            "kind": flint_api::names::KIND,
            "status": status,
        });
        api.patch_status(&name, &ssa, &Patch::Apply(&patch))
            .await
            .map_err(|source| Error::Status {
                function: name.clone(),
                source,
            })?;
    }

    for notice in transitions(function.status.as_ref(), &status, &desired) {
        publish(ctx, function, notice).await;
    }
    // A held revision is retried with the Function's backoff.
    if let Some(source) = held {
        return Err(Error::Image {
            function: name,
            source: Box::new(source),
        });
    }
    Ok(next_action(&desired, &status))
}

/// Pins the image of the revision `desired` cuts, if any, to its digest; or,
/// when it cannot be resolved, holds the revision back (nothing new is
/// applied) and returns why, for the status and a retry with backoff.
async fn pin_new_revision(
    function: &Function,
    ctx: &Context,
    mut desired: DesiredState,
    existing: &[ExistingRevision],
) -> (DesiredState, Option<PinError>) {
    let Some(pinning) = ctx.images.as_ref().filter(|_| desired.latest.created) else {
        return (desired, None);
    };
    let started = Instant::now();
    let pinned = pin_image(function, &ctx.client, pinning).await;
    let took = started.elapsed().as_secs_f64();
    match pinned {
        Ok(Some(image)) => {
            ctx.metrics.observe_image("resolved", Some(took));
            desired.pin_image(&image);
            (desired, None)
        }
        Ok(None) => {
            ctx.metrics.observe_image("as_written", None);
            (desired, None)
        }
        Err(error) => {
            ctx.metrics.observe_image("failed", Some(took));
            warn!(revision = %desired.latest.name, error = %error.describe(), "the new revision's image could not be resolved; the revision is not cut");
            (desired.hold(existing), Some(error))
        }
    }
}

/// Settled functions are looked at rarely; anything still moving, often.
/// A Function that lost a domain is not settled: the watch that wakes it
/// when the owner lets go may come before this controller's own store has
/// seen the owner leave, so it looks again soon rather than in minutes.
fn next_action(desired: &DesiredState, status: &FunctionStatus) -> Action {
    let lost_domain = status.conditions.iter().any(|c| {
        c.type_ == ConditionType::DomainsReady.as_str()
            && c.status == ConditionStatus::False.as_str()
    });
    let settled = !desired.latest.created
        && desired.resolved.is_ok()
        && !lost_domain
        && status.revisions.iter().all(|r| r.ready);
    Action::requeue(if settled {
        REQUEUE_SETTLED
    } else {
        REQUEUE_PENDING
    })
}

async fn publish(ctx: &Context, function: &Function, notice: Notice) {
    let event = Event {
        type_: if notice.warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: notice.reason.to_owned(),
        note: Some(notice.note),
        action: notice.action.to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx
        .recorder
        .publish(&event, &function.object_ref(&()))
        .await
    {
        // An Event is a courtesy to the user; failing to publish one must not
        // fail (and so repeat) a reconcile whose real work is done.
        warn!(reason = notice.reason, error = %error, "publishing an event failed");
    }
}

/// Runs the controller until `shutdown` resolves: watches Functions, the
/// Deployments and Services they own, and their pods (so crash loops and
/// readiness show up in the status at once). The three watches of owned
/// objects also feed the context's cache, which reconciles read instead of
/// listing: each event reaches the cache before it wakes its Function.
pub async fn run_controller(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let managed = watcher::Config::default().labels(&format!("{LABEL_MANAGED_BY}={MANAGED_BY}"));
    let controller = Controller::new(
        Api::<Function>::all(client.clone()),
        watcher::Config::default(),
    );
    let functions = controller.store();
    // A second Context would be a bug; the first store stays.
    let _ = ctx.functions.set(functions.clone());
    let cache = Arc::clone(ctx.cache.get_or_init(|| Arc::new(Cache::default())));
    let deployments = {
        let cache = Arc::clone(&cache);
        watcher(Api::<Deployment>::all(client.clone()), managed.clone())
            .default_backoff()
            .map_ok(|event| event.modify(trim_deployment))
            .inspect_ok(move |event| cache.deployments.apply(event))
            .touched_objects()
    };
    let services = {
        let cache = Arc::clone(&cache);
        watcher(Api::<Service>::all(client.clone()), managed.clone())
            .default_backoff()
            .map_ok(|event| event.modify(trim_service))
            .inspect_ok(move |event| cache.services.apply(event))
            .touched_objects()
    };
    let pods = {
        let cache = Arc::clone(&cache);
        watcher(Api::<Pod>::all(client.clone()), managed)
            .default_backoff()
            .map_ok(|event| event.modify(trim_pod))
            .inspect_ok(move |event| cache.pods.apply(event))
            .touched_objects()
    };
    controller
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .owns_stream(deployments)
        .owns_stream(services)
        .watches_stream(pods, |pod: Pod| {
            let function = pod.labels().get(LABEL_FUNCTION)?.clone();
            let namespace = pod.namespace()?;
            Some(ObjectRef::<Function>::new(&function).within(&namespace))
        })
        // A Function that loses a domain conflict gets it when the owner
        // lets go (deleted, or the domain removed): any Function change
        // looks again at the Functions that lost one.
        .watches(
            Api::<Function>::all(client),
            watcher::Config::default(),
            move |changed: Function| domain_losers(&functions, &changed),
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(function = %object, "reconciled"),
                Err(error) => warn!(error = %error, "controller error"),
            }
        })
        .await;
}

/// The Functions other than `changed` whose status says they lost a
/// custom domain.
fn domain_losers(functions: &Store<Function>, changed: &Function) -> Vec<ObjectRef<Function>> {
    let lost = |f: &Function| {
        f.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| {
                c.type_ == ConditionType::DomainsReady.as_str()
                    && c.status == ConditionStatus::False.as_str()
            })
        })
    };
    functions
        .state()
        .iter()
        .filter(|f| f.uid() != changed.uid() && lost(f))
        .map(|f| ObjectRef::from_obj(&**f))
        .collect()
}
