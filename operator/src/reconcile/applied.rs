//! What needs no write: an object the cluster already holds as the
//! reconciler would apply it, and a status equal to the one it computed.
//! Pure; the controller asks before each write.
//!
//! Every applied object carries, on its own metadata, the hash of its
//! content as applied ([`ANNOTATION_APPLIED_HASH`], see [`stamp`]). The
//! annotation sits outside the pod template, so adding it rolls no pod: an
//! operator upgrade re-applies each Service once, to stamp it, and then
//! leaves it alone. An object edited by hand keeps its stamp and is not
//! repaired until what the reconciler would apply changes (or the stamp is
//! removed); deleting it is repaired at once.

use flint_api::FunctionStatus;
use flint_api::names::ANNOTATION_APPLIED_HASH;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::Serialize;
use serde_json::Value;

use super::cleanup::owned_by;
use super::desired::DesiredState;
use super::hash::content_hash;

/// Stamps `object` with the hash of its content (without the stamp itself),
/// so a later reconcile can tell the observed object is what it would apply.
pub fn stamp<K: Resource + Serialize>(object: &mut K) {
    let annotations = object.meta_mut().annotations.get_or_insert_default();
    annotations.remove(ANNOTATION_APPLIED_HASH);
    // Serializing a k8s-openapi object cannot fail; were it to, it would
    // hash as null, and the observed object would still be compared.
    let hash = content_hash(&serde_json::to_value(&*object).unwrap_or(Value::Null));
    object
        .meta_mut()
        .annotations
        .get_or_insert_default()
        .insert(ANNOTATION_APPLIED_HASH.to_owned(), hash);
}

/// Stamps the Deployment and every Service of `desired` ([`stamp`]).
pub fn stamp_all(desired: &mut DesiredState) {
    if let Some(deployment) = desired.deployment.as_mut() {
        stamp(deployment);
    }
    desired.services.iter_mut().for_each(stamp);
}

fn applied_hash(meta: &ObjectMeta) -> Option<&str> {
    meta.annotations
        .as_ref()?
        .get(ANNOTATION_APPLIED_HASH)
        .map(String::as_str)
}

/// Whether the object `desired` (stamped) must be applied, given the object
/// of the same name the cluster holds (`observed`, if any): it must unless
/// the observed one carries the same stamp and the same controlling owner.
pub fn needs_apply(observed: Option<&ObjectMeta>, desired: &ObjectMeta) -> bool {
    let Some(observed) = observed else {
        return true;
    };
    let owner = desired
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str());
    let same_owner = owner.is_some_and(|uid| owned_by(uid, observed));
    let stamp = applied_hash(desired);
    !(same_owner && stamp.is_some() && stamp == applied_hash(observed))
}

/// The status as the reconciler compares it: serialized, without the
/// fields another writer owns (the autoscaler's `keepAlive`).
fn own_part(status: &FunctionStatus) -> Value {
    let mut value = serde_json::to_value(status).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.remove("keepAlive");
    }
    value
}

/// Whether writing `computed` would change the Function's status
/// (`previous`). Conditions keep their transition times while unchanged
/// (see [`super::status`]), so a settled Function computes the status it
/// already has and nothing is written.
pub fn status_changed(previous: Option<&FunctionStatus>, computed: &FunctionStatus) -> bool {
    previous.is_none_or(|p| own_part(p) != own_part(computed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn service(uid: &str, port: i32) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a-00001", "ownerReferences": [{"apiVersion": "flint.dev/v1alpha1",
                "kind": "Function", "name": "a", "uid": uid, "controller": true}]},
            "spec": {"ports": [{"port": port}]}
        }))
        .unwrap()
    }

    fn stamped(uid: &str, port: i32) -> Service {
        let mut s = service(uid, port);
        stamp(&mut s);
        s
    }

    #[test]
    fn the_stamp_is_the_content_hash_and_stable() {
        let a = stamped("u", 80);
        let mut again = a.clone();
        stamp(&mut again);
        assert_eq!(a, again, "stamping twice changes nothing");
        assert_ne!(
            applied_hash(&a.metadata),
            applied_hash(&stamped("u", 81).metadata)
        );
        assert_eq!(applied_hash(&a.metadata).map(str::len), Some(16));
    }

    #[test]
    fn only_an_object_with_the_same_stamp_and_owner_is_left_alone() {
        let desired = stamped("u", 80);
        assert!(needs_apply(None, &desired.metadata), "absent");
        assert!(
            needs_apply(Some(&service("u", 80).metadata), &desired.metadata),
            "not stamped (made by an earlier operator)"
        );
        assert!(
            needs_apply(Some(&stamped("u", 81).metadata), &desired.metadata),
            "stamped for other content"
        );
        assert!(
            needs_apply(Some(&stamped("other", 80).metadata), &desired.metadata),
            "another Function's"
        );
        assert!(!needs_apply(
            Some(&stamped("u", 80).metadata),
            &desired.metadata
        ));
        let mut not_controller = stamped("u", 80);
        not_controller.metadata.owner_references = Some(vec![OwnerReference {
            controller: None,
            ..not_controller.metadata.owner_references.unwrap()[0].clone()
        }]);
        assert!(needs_apply(
            Some(&not_controller.metadata),
            &desired.metadata
        ));
    }

    #[test]
    fn a_status_differing_only_in_the_autoscalers_part_is_unchanged() {
        let computed: FunctionStatus =
            serde_json::from_value(serde_json::json!({"observedGeneration": 2, "replicas": 1}))
                .unwrap();
        let mut previous = computed.clone();
        assert!(!status_changed(Some(&previous), &computed));
        previous.keep_alive = serde_json::from_value(serde_json::json!([
            {"revision": "a-00001", "policy": "fixed", "message": "m"}
        ]))
        .unwrap();
        assert!(!status_changed(Some(&previous), &computed));
        previous.replicas = Some(0);
        assert!(status_changed(Some(&previous), &computed));
        assert!(status_changed(None, &computed));
    }
}
