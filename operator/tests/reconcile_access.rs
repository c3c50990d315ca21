//! What a Function's access settings put in its status: the https URL
//! under `spec.tls`, and DomainsReady for `spec.domains`, naming the
//! Function that has a contested domain.

use flint_api::backend::FunctionKey;
use flint_api::domains::{Conflict, ConflictReason};
use flint_api::{Function, FunctionStatus};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::status::{StatusInput, compute_status};
use flint_operator::reconcile::{ExistingRevision, RevisionHealth, desired_objects};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

fn function(spec: Value) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "u", "generation": 1},
        "spec": spec
    }))
    .unwrap()
}

fn status(f: &Function, conflicts: &[Conflict]) -> FunctionStatus {
    let mut rev = ExistingRevision::new("hello-00001".to_owned(), 1, spec_hash(&f.spec));
    rev.health = RevisionHealth::Ready;
    rev.ready_replicas = 1;
    let revisions = [rev];
    let desired = desired_objects(f, &revisions).unwrap();
    compute_status(StatusInput {
        function: f,
        desired: &desired,
        revisions: &revisions,
        domain: "example.com",
        domain_conflicts: conflicts,
        now: Timestamp::from_second(1_000).unwrap(),
    })
}

fn condition<'s>(s: &'s FunctionStatus, type_: &str) -> Option<[&'s str; 3]> {
    s.conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| [c.status.as_str(), c.reason.as_str(), c.message.as_str()])
}

#[test]
fn tls_makes_the_url_https_and_tag_urls_too() {
    let f = function(json!({
        "image": "a:1", "tls": {"redirect": true},
        "traffic": [{"latestRevision": true, "percent": 100, "tag": "now"}]
    }));
    let s = status(&f, &[]);
    assert_eq!(s.url.as_deref(), Some("https://hello.ns.example.com"));
    assert_eq!(
        s.traffic[0].url.as_deref(),
        Some("https://now-hello.ns.example.com")
    );
    let plain = status(&function(json!({"image": "a:1"})), &[]);
    assert_eq!(plain.url.as_deref(), Some("http://hello.ns.example.com"));
}

#[test]
fn no_domains_no_domains_condition() {
    let s = status(&function(json!({"image": "a:1"})), &[]);
    assert_eq!(condition(&s, "DomainsReady"), None);
}

#[test]
fn claimed_domains_are_ready() {
    let s = status(
        &function(json!({"image": "a:1", "domains": ["api.example.org"]})),
        &[],
    );
    let [status, reason, _] = condition(&s, "DomainsReady").unwrap();
    assert_eq!([status, reason], ["True", "DomainsClaimed"]);
    assert_eq!(condition(&s, "Ready").unwrap()[0], "True");
}

#[test]
fn a_contested_domain_names_its_owner_and_leaves_ready_alone() {
    let f =
        function(json!({"image": "a:1", "domains": ["api.example.org", "hello.ns.example.com"]}));
    let conflicts = [
        Conflict {
            function: FunctionKey::new("ns", "hello"),
            domain: "api.example.org".to_owned(),
            reason: ConflictReason::ClaimedBy(FunctionKey::new("other", "first")),
        },
        Conflict {
            function: FunctionKey::new("ns", "hello"),
            domain: "hello.ns.example.com".to_owned(),
            reason: ConflictReason::PlatformDomain("example.com".to_owned()),
        },
    ];
    let s = status(&f, &conflicts);
    let [status, reason, message] = condition(&s, "DomainsReady").unwrap();
    assert_eq!([status, reason], ["False", "DomainConflict"]);
    assert!(
        message.contains("api.example.org is already claimed by Function other/first"),
        "{message}"
    );
    assert!(
        message.contains("under the platform domain example.com"),
        "{message}"
    );
    assert_eq!(condition(&s, "Ready").unwrap()[0], "True");
}
