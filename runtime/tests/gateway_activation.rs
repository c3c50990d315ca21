//! The activator: requests wait while a revision has no free replica, the
//! autoscaler is poked once, replicas release them no faster than their
//! `concurrency`, and a full queue or a long wait gets a plain answer.

mod gateway_support;

use std::sync::atomic::Ordering;

use flint_api::Protocol;
use flint_api::backend::Endpoint;
use flint_runtime::gateway::Cold;
use gateway_support::*;
use http::StatusCode;

#[tokio::test]
async fn request_at_zero_waits_pokes_once_and_is_released_by_a_ready_replica() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let k = gw.route_single("cold", revision("cold-00001", 0, 30));

    let started = std::time::Instant::now();
    let (waiting, state) = gw.queue_gets(&k, 3, "cold.ns.localhost", "/").await;
    assert!(matches!(state.cold(), Cold::Pending { .. }));
    let pokes = gw.pokes.taken();
    // One poke per cold start, not one per request (on a slow machine, a
    // second may have passed and brought the first re-poke).
    let repokes = started.elapsed().as_secs() as usize;
    assert!(
        (1..=1 + repokes).contains(&pokes.len()),
        "one poke per cold start: {pokes:?}"
    );
    assert_eq!(
        (pokes[0].namespace.as_str(), pokes[0].function.as_str()),
        ("ns", "cold")
    );
    assert_eq!(
        (pokes[0].revision.as_str(), pokes[0].waiting),
        ("cold-00001", 1)
    );

    // A replica that is not ready yet releases nothing.
    let starting = Endpoint {
        ready: false,
        ..ready("p", app.addr)
    };
    gw.gateway.set_endpoints(&k, vec![starting]);
    assert_eq!(state.replicas(), 0);
    assert_eq!(state.waiting(), 3);

    gw.gateway.set_endpoints(&k, vec![ready("p", app.addr)]);
    for w in waiting {
        let (status, _, body) = w.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("app GET / "), "{body}");
    }
    assert_eq!(state.cold(), Cold::Warm);
    assert_eq!(state.waiting(), 0);

    let text = gw.gateway.metrics_text().unwrap();
    let labels = "{function=\"cold\",namespace=\"ns\",revision=\"cold-00001\"}";
    assert_eq!(samples(&text, "flint_cold_starts_total")[labels], 1.0);
    assert_eq!(
        samples(&text, "flint_cold_start_duration_seconds_count")[labels],
        1.0
    );
    assert_eq!(samples(&text, "flint_queue_depth")[labels], 0.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn replicas_get_no_more_than_their_concurrency_when_a_backlog_is_released() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let k = gw.route_single("one", revision("one-00001", 2, 30));
    let (waiting, state) = gw.queue_gets(&k, 8, "one.ns.localhost", "/hold").await;
    gw.gateway.set_endpoints(&k, vec![ready("p", app.addr)]);
    eventually(|| app.stats.in_flight.load(Ordering::SeqCst) == 2).await;
    assert_eq!(state.waiting(), 6);
    assert_eq!(state.in_flight("p"), Some(2));
    app.gate.add_permits(8);
    for w in waiting {
        assert_eq!(w.await.unwrap().0, StatusCode::OK);
    }
    assert_eq!(app.stats.served.load(Ordering::SeqCst), 8);
    assert_eq!(app.stats.max_in_flight.load(Ordering::SeqCst), 2);
    gw.shutdown().await;
}

#[tokio::test]
async fn full_queue_is_503_with_retry_after() {
    let mut cfg = config();
    cfg.queue_size = 2;
    let gw = gateway(cfg).await;
    let k = gw.route_single("busy", revision("busy-00001", 0, 30));
    let (waiting, _) = gw.queue_gets(&k, 2, "busy.ns.localhost", "/").await;
    let (status, headers, body) = get(gw.addr, "busy.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(headers["retry-after"], "2");
    assert_eq!(
        body,
        "revision busy-00001 has 2 requests waiting already; retry later\n"
    );
    let text = gw.gateway.metrics_text().unwrap();
    let labels = "{function=\"busy\",namespace=\"ns\",revision=\"busy-00001\"}";
    assert_eq!(samples(&text, "flint_queue_overflow_total")[labels], 1.0);
    assert_eq!(samples(&text, "flint_queue_depth")[labels], 2.0);
    for w in waiting {
        w.abort();
    }
    gw.shutdown().await;
}

#[tokio::test]
async fn waiting_past_the_timeout_is_504_and_the_queue_empties() {
    let gw = gateway(config()).await;
    let k = gw.route_single("slow", revision("slow-00001", 0, 1));
    let (status, _, body) = get(gw.addr, "slow.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(body, "revision slow-00001 did not answer within 1s\n");
    let state = gw.gateway.revision(&k).unwrap();
    assert_eq!(state.waiting(), 0);
    // Everyone gave up: the next request is a new cold start with a new poke.
    assert_eq!(state.cold(), Cold::Warm);
    let text = gw.gateway.metrics_text().unwrap();
    let labels = "{code=\"504\",function=\"slow\",namespace=\"ns\",revision=\"slow-00001\"}";
    assert_eq!(samples(&text, "flint_requests_total")[labels], 1.0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_replica_turning_not_ready_leaves_rotation_at_once() {
    let a = app("a", Protocol::Http1).await;
    let b = app("b", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let k = gw.serve_single(
        "f",
        revision("f-00001", 0, 30),
        vec![ready("a", a.addr), ready("b", b.addr)],
    );
    let leaving = Endpoint {
        terminating: true,
        ..ready("b", b.addr)
    };
    gw.gateway
        .set_endpoints(&k, vec![ready("a", a.addr), leaving]);
    for _ in 0..20 {
        let (status, _, body) = get(gw.addr, "f.ns.localhost", "/").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("a "), "{body}");
    }
    assert_eq!(b.stats.served.load(Ordering::SeqCst), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_burst_of_1000_at_zero_completes_and_the_first_replica_never_exceeds_its_concurrency() {
    const BURST: usize = 1000;
    let first = app("first", Protocol::Http1).await;
    let mut cfg = config();
    cfg.queue_size = BURST;
    let gw = gateway(cfg).await;
    let k = gw.route_single("burst", revision("burst-00001", 10, 60));
    let started = std::time::Instant::now();
    let (requests, state) = gw
        .queue_gets(&k, BURST, "burst.ns.localhost", "/slow")
        .await;
    // One poke for the burst (plus one a second while it waits).
    let pokes = gw.pokes.taken().len();
    assert!(
        (1..=1 + started.elapsed().as_secs() as usize).contains(&pokes),
        "{pokes} pokes"
    );
    gw.gateway
        .set_endpoints(&k, vec![ready("first", first.addr)]);
    for r in requests {
        let (status, _, body) = within(BOUND, r).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.starts_with("first GET /slow "), "{body}");
    }
    assert_eq!(first.stats.served.load(Ordering::SeqCst), BURST);
    let most = first.stats.max_in_flight.load(Ordering::SeqCst);
    assert!((1..=10).contains(&most), "the replica saw {most} at once");
    assert_eq!(state.waiting(), 0);
    assert_eq!(state.in_flight("first"), Some(0));
    let text = gw.gateway.metrics_text().unwrap();
    let ok = "{code=\"200\",function=\"burst\",namespace=\"ns\",revision=\"burst-00001\"}";
    assert_eq!(samples(&text, "flint_requests_total")[ok], BURST as f64);
    assert_eq!(samples(&text, "flint_requests_total").len(), 1);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_starting_replica_that_answers_the_gateways_probe_serves_before_it_is_ready() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let mut rev = revision("probe-00001", 0, 30);
    rev.probe_starting = true;
    let k = gw.route_single("probe", rev);
    let waiting = gw.spawn_gets(2, "probe.ns.localhost", "/");
    let state = gw.gateway.revision(&k).unwrap();
    eventually(|| state.waiting() == 2).await;
    // Listed but not ready (the kubelet has not probed it yet): the gateway
    // connects to it itself and releases the waiting requests.
    let starting = Endpoint {
        ready: false,
        ..ready("p", app.addr)
    };
    gw.gateway.set_endpoints(&k, vec![starting.clone()]);
    for w in waiting {
        let (status, _, body) = w.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        assert!(body.starts_with("app GET / "), "{body}");
    }
    assert_eq!(state.replicas(), 1);
    // A starting replica that terminates leaves rotation at once.
    gw.gateway.set_endpoints(
        &k,
        vec![Endpoint {
            terminating: true,
            ..starting
        }],
    );
    assert_eq!(state.replicas(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn a_starting_replica_whose_port_is_closed_stays_out_of_rotation() {
    // A port nothing listens on: the probe keeps failing.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = gateway(config()).await;
    let mut rev = revision("shut-00001", 0, 30);
    rev.probe_starting = true;
    let k = gw.route_single("shut", rev);
    let starting = Endpoint {
        ready: false,
        ..ready("p", closed)
    };
    gw.gateway.set_endpoints(&k, vec![starting]);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(gw.gateway.revision(&k).unwrap().replicas(), 0);
    gw.shutdown().await;
}

#[tokio::test]
async fn requests_still_waiting_poke_again_each_second_not_once_each() {
    // A poke can be lost (the autoscaler's leader changing hands): while
    // requests wait for a first replica, one of them pokes again every
    // second.
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let k = gw.route_single("lost", revision("lost-00001", 0, 30));
    let (waiting, _state) = gw.queue_gets(&k, 3, "lost.ns.localhost", "/").await;
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let pokes = gw.pokes.taken();
    assert!(
        (2..=4).contains(&pokes.len()),
        "the first poke and about one a second after it, not one per waiting request: {pokes:?}"
    );
    assert!(
        pokes.iter().all(|p| p.revision == "lost-00001"),
        "{pokes:?}"
    );
    // The first poke came with the first request; the later ones say how
    // many wait now.
    assert!(pokes[1..].iter().all(|p| p.waiting == 3), "{pokes:?}");
    gw.gateway.set_endpoints(&k, vec![ready("p", app.addr)]);
    for w in waiting {
        assert_eq!(w.await.unwrap().0, StatusCode::OK);
    }
    gw.shutdown().await;
}

/// Requests waiting at zero count against one gateway-wide memory budget:
/// once two revisions' waiting heads fill it, the next request to either
/// gets 503 with `Retry-After` naming the budget, although neither queue
/// is full; released requests give their bytes back.
#[tokio::test]
async fn waiting_requests_of_all_revisions_share_one_memory_budget() {
    let mut cfg = config();
    cfg.max_buffered_bytes = 64 * 1024;
    cfg.memory_budget_bytes = flint_runtime::budget::MIN_MEMORY_BUDGET_BYTES;
    let gw = gateway(cfg).await;
    let big = "b".repeat(32 * 1024);
    let rev_a = revision("a-00001", 0, 30);
    let rev_b = revision("b-00001", 0, 30);
    let (ka, kb) = (key("a", "a-00001"), key("b", "b-00001"));
    gw.gateway
        .set_routes(vec![single("a", rev_a), single("b", rev_b)]);
    let send = |host: &'static str, n: usize| -> Vec<_> {
        (0..n)
            .map(|_| {
                let (addr, big) = (gw.addr, big.clone());
                tokio::spawn(async move {
                    let req = http::Request::get("/")
                        .header("host", host)
                        .header("x-big", big)
                        .body(http_body_util::Full::new(bytes::Bytes::new()))
                        .unwrap();
                    request(addr, req).await
                })
            })
            .collect()
    };
    let budget = gw.gateway.memory_budget().clone();
    let waiting_a = send("a.ns.localhost", 20);
    let state_a = gw.gateway.revision(&ka).unwrap();
    eventually(|| state_a.waiting() == 20).await;
    let each = budget.held() / 20;
    assert!(each > 2 * 32 * 1024, "a waiting head costs {each} bytes");
    let room = (budget.limit() - budget.held()) / each;
    assert!(room < 40, "the budget holds {room} more");
    let b = send("b.ns.localhost", 40);
    let state_b = gw.gateway.revision(&kb).unwrap();
    let refused = 40 - room;
    let over = flint_runtime::budget::Use::WaitingRequest;
    eventually(|| state_b.waiting() == room && budget.refused(over) == refused as u64).await;
    assert!(budget.held() <= budget.limit());
    let text = gw.gateway.metrics_text().unwrap();
    let refusals = samples(&text, "flint_memory_budget_refused_total");
    assert_eq!(refusals["{use=\"waiting_request\"}"], refused as f64);
    assert_eq!(samples(&text, "flint_memory_budget_bytes")[""], 4194304.0);
    let labels = "{function=\"b\",namespace=\"ns\",revision=\"b-00001\"}";
    assert_eq!(samples(&text, "flint_queue_overflow_total")[labels], 0.0);

    // Replicas come: everyone waiting is served and the budget is free;
    // the others were refused, saying why.
    let app = app("app", Protocol::Http1).await;
    gw.gateway.set_endpoints(&ka, vec![ready("p", app.addr)]);
    gw.gateway.set_endpoints(&kb, vec![ready("p", app.addr)]);
    for r in waiting_a {
        let (status, _, body) = within(BOUND, r).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let mut answered_b = std::collections::HashMap::new();
    for r in b {
        let (status, headers, body) = within(BOUND, r).await;
        *answered_b.entry(status).or_insert(0) += 1;
        if status == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(headers["retry-after"], "2");
            assert!(
                body.starts_with(
                    "the gateway's memory budget of 4194304 bytes (--memory-budget-bytes) is spent"
                ),
                "{body}"
            );
        }
    }
    assert_eq!(
        answered_b,
        std::collections::HashMap::from([
            (StatusCode::OK, room),
            (StatusCode::SERVICE_UNAVAILABLE, refused)
        ])
    );
    assert_eq!(budget.held(), 0);
    // A warm request is not charged at all.
    let (status, _, _) = get(gw.addr, "a.ns.localhost", "/").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(budget.refused(over), refused as u64);
    gw.shutdown().await;
}
