//! What the cluster holds for one Function: its Deployments (those it owns),
//! its pods and its Services, each read with one list by the function label.
//! The reconciler decides from them what to create, what is already right
//! (see [`super::applied`]) and what to delete.
//!
//! Two sources, the same answer: the running controller reads them from
//! its watches ([`from_cache`], the index of [`super::cache`]), so a
//! settled reconcile costs no request at all; a reconcile without the
//! controller's watches (a context made without a cache, as in the mocked
//! API server tests) lists them, three label-selected LISTs ([`list`]).

use flint_api::names::LABEL_FUNCTION;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams};

use super::cache::Cache;
use super::cleanup::owned_by;
use super::error::Error;

/// The objects of one Function, as listed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// The Deployments the Function owns (controlling owner reference with
    /// its uid); others carrying its label are left out.
    pub deployments: Vec<Deployment>,
    /// The pods carrying the Function's label.
    pub pods: Vec<Pod>,
    /// The Services carrying the Function's label, owned or not (deleting
    /// checks ownership itself, and applying compares owners).
    pub services: Vec<Service>,
}

impl Observed {
    /// The observed Service named `name`, if any.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.metadata.name.as_deref() == Some(name))
    }

    /// The observed (owned) Deployment named `name`, if any.
    pub fn deployment(&self, name: &str) -> Option<&Deployment> {
        self.deployments
            .iter()
            .find(|d| d.metadata.name.as_deref() == Some(name))
    }
}

/// The label selector of the Function `name`'s objects.
pub fn by_function(name: &str) -> ListParams {
    ListParams::default().labels(&format!("{LABEL_FUNCTION}={name}"))
}

fn list_error<'a>(kind: &'static str, function: &'a str) -> impl FnOnce(kube::Error) -> Error + 'a {
    move |source| Error::List {
        kind,
        function: function.to_owned(),
        source,
    }
}

/// The objects of the Function `name` (uid `uid`) in `namespace`, as the
/// controller's watches last delivered them.
pub fn from_cache(cache: &Cache, namespace: &str, name: &str, uid: Option<&str>) -> Observed {
    Observed {
        deployments: cache
            .deployments
            .of(namespace, name)
            .into_iter()
            .filter(|d| uid.is_some_and(|uid| owned_by(uid, &d.metadata)))
            .collect(),
        pods: cache.pods.of(namespace, name),
        services: cache.services.of(namespace, name),
    }
}

/// Lists the objects of the Function `name` (uid `uid`) in the namespace
/// the APIs are bound to: Deployments, then pods, then Services.
pub async fn list(
    name: &str,
    uid: Option<&str>,
    deployments: &Api<Deployment>,
    pods: &Api<Pod>,
    services: &Api<Service>,
) -> Result<Observed, Error> {
    let selector = by_function(name);
    let deployments = deployments
        .list(&selector)
        .await
        .map_err(list_error("deployments", name))?
        .items
        .into_iter()
        .filter(|d| uid.is_some_and(|uid| owned_by(uid, &d.metadata)))
        .collect();
    let pods = pods
        .list(&selector)
        .await
        .map_err(list_error("pods", name))?
        .items;
    let services = services
        .list(&selector)
        .await
        .map_err(list_error("services", name))?
        .items;
    Ok(Observed {
        deployments,
        pods,
        services,
    })
}
