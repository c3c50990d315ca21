//! The objects of every Function as the controller's watches deliver them:
//! its Deployments, pods and Services, indexed by namespace and function
//! label, so that a reconcile reads them from memory instead of listing
//! them (three LISTs per reconcile before; none now, whatever the number of
//! Functions).
//!
//! Each watch event updates the index before the controller sees it as a
//! trigger, so a reconcile woken by a change of a Function's object reads
//! that change. What is kept is trimmed to what the reconciler reads
//! ([`trim_deployment`], [`trim_pod`], [`trim_service`]): metadata without
//! managedFields, the app container's image, the statuses. That keeps an
//! operator with 10,000 Functions small.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use flint_api::names::{CONTAINER_NAME, LABEL_FUNCTION};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, Service};
use kube::Resource;
use kube::runtime::watcher::Event;
use tokio::sync::watch;

/// Namespace and function label.
type Key = (String, String);
/// Per Function, its objects by name.
type Objects<K> = HashMap<Key, BTreeMap<String, Arc<K>>>;

/// Objects of one kind, indexed by namespace and function label.
pub struct ByFunction<K> {
    index: RwLock<Index<K>>,
    ready: watch::Sender<bool>,
}

struct Index<K> {
    live: Objects<K>,
    /// Filled during a (re)list, swapped in when it is done.
    relist: Option<Objects<K>>,
}

impl<K> Default for ByFunction<K> {
    fn default() -> Self {
        Self {
            index: RwLock::new(Index {
                live: HashMap::new(),
                relist: None,
            }),
            ready: watch::Sender::new(false),
        }
    }
}

fn key_of<K: Resource>(obj: &K) -> Option<(Key, String)> {
    let meta = obj.meta();
    let function = meta.labels.as_ref()?.get(LABEL_FUNCTION)?;
    Some((
        (meta.namespace.clone()?, function.clone()),
        meta.name.clone()?,
    ))
}

fn insert<K: Resource + Clone>(objects: &mut Objects<K>, obj: &K) {
    if let Some((key, name)) = key_of(obj) {
        objects
            .entry(key)
            .or_default()
            .insert(name, Arc::new(obj.clone()));
    }
}

impl<K: Resource + Clone> ByFunction<K> {
    /// Applies one watch event. The first list makes the index ready; a
    /// later relist replaces the whole index when it is done, so readers
    /// never see half of one.
    pub fn apply(&self, event: &Event<K>) {
        let mut index = self
            .index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match event {
            Event::Init => index.relist = Some(HashMap::new()),
            Event::InitApply(obj) => {
                if let Some(relist) = index.relist.as_mut() {
                    insert(relist, obj);
                }
            }
            Event::InitDone => {
                if let Some(relist) = index.relist.take() {
                    index.live = relist;
                }
                self.ready.send_replace(true);
            }
            Event::Apply(obj) => insert(&mut index.live, obj),
            Event::Delete(obj) => {
                if let Some((key, name)) = key_of(obj)
                    && let Some(objects) = index.live.get_mut(&key)
                {
                    objects.remove(&name);
                    if objects.is_empty() {
                        index.live.remove(&key);
                    }
                }
            }
        }
    }

    /// The objects of Function `function` in `namespace`, by name.
    pub fn of(&self, namespace: &str, function: &str) -> Vec<K> {
        let index = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        index
            .live
            .get(&(namespace.to_owned(), function.to_owned()))
            .map(|objects| objects.values().map(|o| (**o).clone()).collect())
            .unwrap_or_default()
    }

    /// How many objects the index holds.
    pub fn len(&self) -> usize {
        let index = self
            .index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        index.live.values().map(BTreeMap::len).sum()
    }

    /// Whether the index holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Resolves once the first list is done.
    pub async fn ready(&self) {
        let mut rx = self.ready.subscribe();
        // The sender lives as long as `self`: the wait ends with it.
        let _ = rx.wait_for(|ready| *ready).await;
    }
}

/// The Deployments, pods and Services of every Function.
#[derive(Default)]
pub struct Cache {
    /// Revision Deployments.
    pub deployments: ByFunction<Deployment>,
    /// Revision pods.
    pub pods: ByFunction<Pod>,
    /// Revision Services.
    pub services: ByFunction<Service>,
}

impl Cache {
    /// Resolves once every kind had its first list.
    pub async fn ready(&self) {
        self.deployments.ready().await;
        self.pods.ready().await;
        self.services.ready().await;
    }

    /// A cache holding `deployments`, `pods` and `services`, ready: what a
    /// reconcile reads as if the watches had delivered them.
    pub fn holding(deployments: &[Deployment], pods: &[Pod], services: &[Service]) -> Self {
        fn fill<K: Resource + Clone>(index: &ByFunction<K>, objects: &[K]) {
            index.apply(&Event::Init);
            for obj in objects {
                index.apply(&Event::InitApply(obj.clone()));
            }
            index.apply(&Event::InitDone);
        }
        let cache = Self::default();
        fill(&cache.deployments, deployments);
        fill(&cache.pods, pods);
        fill(&cache.services, services);
        cache
    }
}

/// Keeps of a Deployment what the reconciler reads: metadata without
/// managedFields, the replica count, the app container's name and image,
/// and the status.
pub fn trim_deployment(deployment: &mut Deployment) {
    deployment.metadata.managed_fields = None;
    if let Some(spec) = deployment.spec.as_mut() {
        let template = &mut spec.template;
        template.metadata = None;
        let app = template.spec.as_ref().and_then(|s| {
            s.containers
                .iter()
                .find(|c| c.name == CONTAINER_NAME)
                .map(|c| Container {
                    name: c.name.clone(),
                    image: c.image.clone(),
                    ..Container::default()
                })
        });
        template.spec = Some(PodSpec {
            containers: app.into_iter().collect(),
            ..PodSpec::default()
        });
    }
}

/// Keeps of a pod what the reconciler reads: metadata without
/// managedFields, and the status (conditions, container states).
pub fn trim_pod(pod: &mut Pod) {
    pod.metadata.managed_fields = None;
    pod.spec = None;
}

/// Keeps of a Service its metadata without managedFields: the reconciler
/// reads a Service's name, owners and applied-content stamp, nothing else.
pub fn trim_service(service: &mut Service) {
    service.metadata.managed_fields = None;
    service.spec = None;
    service.status = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(ns: &str, function: &str, name: &str) -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"flint.dev/function": function},
                         "managedFields": [{"manager": "flint-operator"}]},
            "spec": {"clusterIP": "10.96.0.10"}
        }))
        .unwrap()
    }

    #[test]
    fn objects_are_found_by_namespace_and_function() {
        let index = ByFunction::default();
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(service("a", "hello", "hello-00001")));
        index.apply(&Event::InitApply(service("b", "hello", "hello-00001")));
        index.apply(&Event::InitDone);
        index.apply(&Event::Apply(service("a", "hello", "hello-00002")));
        let names = |ns, f| {
            index
                .of(ns, f)
                .into_iter()
                .map(|s| s.metadata.name.unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names("a", "hello"), ["hello-00001", "hello-00002"]);
        assert_eq!(names("b", "hello"), ["hello-00001"]);
        assert!(names("a", "other").is_empty());
        index.apply(&Event::Delete(service("a", "hello", "hello-00001")));
        assert_eq!(names("a", "hello"), ["hello-00002"]);
        assert_eq!(index.len(), 2);
    }

    #[test]
    fn a_relist_replaces_the_index_when_done() {
        let index = ByFunction::default();
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(service("a", "hello", "hello-00001")));
        index.apply(&Event::InitDone);
        index.apply(&Event::Init);
        index.apply(&Event::InitApply(service("a", "hello", "hello-00002")));
        // Until the relist is done, the last complete view is served.
        assert_eq!(index.of("a", "hello").len(), 1);
        assert_eq!(
            index.of("a", "hello")[0].metadata.name.as_deref(),
            Some("hello-00001")
        );
        index.apply(&Event::InitDone);
        assert_eq!(
            index.of("a", "hello")[0].metadata.name.as_deref(),
            Some("hello-00002")
        );
    }

    #[tokio::test]
    async fn ready_after_the_first_list() {
        let index: ByFunction<Service> = ByFunction::default();
        assert!(!*index.ready.borrow());
        index.apply(&Event::Init);
        assert!(!*index.ready.borrow());
        index.apply(&Event::InitDone);
        index.ready().await;
    }

    #[test]
    fn trimmed_objects_keep_what_the_reconciler_reads() {
        let mut d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": "hello-00001", "annotations": {"flint.dev/spec-hash": "h"},
                         "managedFields": [{"manager": "flint-operator"}]},
            "spec": {"replicas": 0, "selector": {},
                     "template": {"metadata": {"labels": {"a": "b"}},
                                  "spec": {"containers": [
                                      {"name": "app", "image": "img@sha256:1", "env": [{"name": "X", "value": "1"}]},
                                      {"name": "sidecar", "image": "side"}]}}},
            "status": {"readyReplicas": 0}
        }))
        .unwrap();
        trim_deployment(&mut d);
        assert_eq!(d.metadata.managed_fields, None);
        assert_eq!(
            d.metadata.annotations.as_ref().unwrap()["flint.dev/spec-hash"],
            "h"
        );
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(0));
        let containers = spec.template.spec.unwrap().containers;
        assert_eq!(containers.len(), 1);
        assert_eq!(containers[0].image.as_deref(), Some("img@sha256:1"));
        assert_eq!(containers[0].env, None);
        assert!(d.status.is_some());

        let mut s = service("a", "hello", "hello-00001");
        trim_service(&mut s);
        assert_eq!(s.metadata.managed_fields, None);
        assert_eq!(s.spec, None);
        assert!(s.metadata.labels.is_some());
    }
}
