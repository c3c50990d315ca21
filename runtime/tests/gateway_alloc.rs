//! Picking a route allocates nothing: the table lookup and the traffic
//! split run on borrowed strings and precomputed slices.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use flint_api::backend::{FunctionRoute, RevisionRoute};
use flint_api::{Protocol, TrafficStatus};
use flint_runtime::gateway::RouteTable;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::SeqCst) {
            ALLOCATIONS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn rev(name: String) -> RevisionRoute {
    RevisionRoute {
        name,
        concurrency: 0,
        timeout_seconds: 300,
        protocol: Protocol::Http1,
        failure: None,
        probe_starting: false,
    }
}

#[test]
fn route_lookup_and_split_allocate_nothing() {
    let routes: Vec<FunctionRoute> = (0..500)
        .map(|i| {
            let name = format!("fn{i}");
            FunctionRoute {
                namespace: "default".into(),
                revisions: vec![rev(format!("{name}-00001")), rev(format!("{name}-00002"))],
                traffic: vec![
                    TrafficStatus {
                        revision_name: format!("{name}-00002"),
                        percent: 80,
                        latest_revision: true,
                        tag: None,
                        url: None,
                    },
                    TrafficStatus {
                        revision_name: format!("{name}-00001"),
                        percent: 20,
                        latest_revision: false,
                        tag: Some("old".into()),
                        url: None,
                    },
                ],
                name,
                access: Default::default(),
            }
        })
        .collect();
    let table: RouteTable<()> = RouteTable::build(&routes, "example.com", |_| ());
    let requests = [
        ("fn42.default.example.com", "/"),
        ("FN7.Default.Example.com:8080", "/a/b"),
        ("old-fn499.default.example.com", "/"),
        ("10.0.0.1:8080", "/function/default/fn3/x"),
        ("unknown.default.example.com", "/nowhere"),
    ];
    let mut found = 0;
    COUNTING.store(true, Ordering::SeqCst);
    for r in 0..1000u32 {
        for (host, path) in requests {
            if let Some(routed) = table.route(host, path) {
                found += usize::from(routed.revision(r).is_some());
            }
        }
    }
    COUNTING.store(false, Ordering::SeqCst);
    assert_eq!(ALLOCATIONS.load(Ordering::SeqCst), 0);
    assert_eq!(found, 4000);
}
