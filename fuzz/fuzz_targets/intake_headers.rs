//! The async intake's header handling: fuzzer-chosen requests (method,
//! target, Host, any headers, body) put to an intake in front of a table of
//! fuzzer-chosen Functions, as the gateway would: asked whether it wants
//! the request, where it goes, then to accept it onto an in-memory queue.
//! Never a panic; the answer is one of the documented ones; what a 202
//! stores carries none of the headers the intake must drop (hop-by-hop,
//! Host, Prefer, Flint's own, Proxy-Authorization, and the caller's
//! credentials unless the Function stores them), a valid id and a body
//! within the limit, and reads back from its record as it was.
//!
//! Callback URLs are kept only with IP-literal hosts: any other would be
//! resolved, and a fuzzer must not send DNS queries.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arbitrary::Arbitrary;
use bytes::Bytes;
use flint_api::names::{function_host, tagged_host};
use flint_fuzz::{FunctionSpec, request, table};
use flint_runtime::events::intake::Routing;
use flint_runtime::events::invocation::{INVOCATION_ID_HEADER, valid_id};
use flint_runtime::events::queue::Enqueued;
use flint_runtime::events::scripted::{Script, Scripted};
use flint_runtime::events::{
    AsyncIntake, EventMetrics, FunctionKey, Invocation, QueueError, Target, Targets,
};
use futures::future::BoxFuture;
use http::StatusCode;
use http_body_util::Full;
use libfuzzer_sys::fuzz_target;

/// The largest body the intake takes here (413 beyond).
const MAX_BODY: usize = 1024;

/// Headers a stored invocation never carries.
const NEVER_STORED: [&str; 14] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "prefer",
    "x-callback-url",
    "x-flint-invocation-id",
    "x-flint-attempt",
];

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    functions: Vec<FunctionSpec<'a>>,
    store_credentials: bool,
    /// The queue refuses (as a full stream does).
    queue_full: bool,
    method: &'a str,
    address: Address<'a>,
    headers: Vec<(&'a str, &'a [u8])>,
    body: &'a [u8],
}

/// Where the request is sent: anywhere, or (so that the fuzzer reaches the
/// paths past routing without guessing names) at one of the table's
/// Functions by one of the forms the intake takes.
#[derive(Debug, Arbitrary)]
enum Address<'a> {
    /// This request target, as is.
    Raw(&'a str),
    /// `/async-function/<ns>/<fn><rest>` of the `index`th Function.
    AsyncPath { index: u8, rest: &'a str },
    /// `/function/<ns>/<fn><rest>` of the `index`th Function.
    FunctionPath { index: u8, rest: &'a str },
    /// `path` with the `index`th Function's host (its tagged host when
    /// `tagged`) as `Host`.
    Host {
        index: u8,
        tagged: bool,
        path: &'a str,
    },
}

impl Address<'_> {
    /// The request target and the extra `Host` header, if any.
    fn resolve(&self, specs: &[FunctionSpec<'_>]) -> (String, Option<String>) {
        let pick = |index: &u8| specs.get(usize::from(*index) % specs.len().max(1));
        match self {
            Self::Raw(target) => ((*target).to_owned(), None),
            Self::AsyncPath { index, rest } | Self::FunctionPath { index, rest } => {
                let prefix = if matches!(self, Self::AsyncPath { .. }) {
                    "/async-function/"
                } else {
                    "/function/"
                };
                match pick(index) {
                    Some(f) => (format!("{prefix}{}/{}{rest}", f.namespace, f.name), None),
                    None => (format!("{prefix}{rest}"), None),
                }
            }
            Self::Host {
                index,
                tagged,
                path,
            } => {
                let host = pick(index).map(|f| match (tagged, f.tag) {
                    (true, Some(tag)) => tagged_host(tag, f.name, f.namespace, flint_fuzz::DOMAIN),
                    _ => function_host(f.name, f.namespace, flint_fuzz::DOMAIN),
                });
                ((*path).to_owned(), host)
            }
        }
    }
}

/// A queue keeping what it is given, or refusing everything.
#[derive(Default)]
struct Memory {
    full: bool,
    stored: Mutex<Vec<Invocation>>,
}

impl Script for Memory {
    fn enqueue(&self, invocation: Invocation) -> BoxFuture<'_, Result<Enqueued, QueueError>> {
        Box::pin(async move {
            if self.full {
                return Err(QueueError::Full {
                    stream: "FLINT_ASYNC",
                    max_bytes: 1,
                });
            }
            self.stored.lock().unwrap().push(invocation);
            Ok(Enqueued::New)
        })
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

fn metrics() -> EventMetrics {
    static METRICS: OnceLock<EventMetrics> = OnceLock::new();
    METRICS.get_or_init(|| EventMetrics::new().unwrap()).clone()
}

/// Whether a callback URL would be resolved without DNS (an IP literal).
fn ip_literal(url: &[u8]) -> bool {
    std::str::from_utf8(url)
        .ok()
        .and_then(|u| u.parse::<http::Uri>().ok())
        .and_then(|u| {
            u.host()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        })
        .is_some_and(|h| h.parse::<IpAddr>().is_ok())
}

fuzz_target!(|input: Input<'_>| {
    let specs: Vec<FunctionSpec<'_>> = input.functions.iter().take(16).cloned().collect();
    let table = table(&specs, flint_fuzz::DOMAIN);
    let targets = Targets::default();
    let target = Target {
        max_retries: 1,
        max_age: Duration::from_secs(60),
        max_in_flight: 1,
        timeout: Duration::from_secs(1),
        store_credentials: input.store_credentials,
    };
    targets.set(
        specs
            .iter()
            .map(|s| (FunctionKey::new(s.namespace, s.name), target))
            .collect::<HashMap<_, _>>(),
    );
    let queue = Arc::new(Scripted(Memory {
        full: input.queue_full,
        ..Memory::default()
    }));
    let intake =
        AsyncIntake::new(Arc::clone(&queue), targets.clone(), metrics()).with_max_body(MAX_BODY);
    let (target, host) = input.address.resolve(&specs);
    let mut headers: Vec<(&str, &[u8])> = input
        .headers
        .iter()
        .filter(|(name, value)| !name.eq_ignore_ascii_case("x-callback-url") || ip_literal(value))
        .copied()
        .collect();
    if let Some(host) = &host {
        headers.insert(0, ("host", host.as_bytes()));
    }
    let body = Full::new(Bytes::copy_from_slice(input.body));
    let Some(req) = request(input.method, &target, &headers, body) else {
        return;
    };
    if !intake.wants(&req) {
        return;
    }
    let routing = intake.route(&req, &table);
    if routing == Routing::Proxy {
        return;
    }
    let resp = runtime().block_on(intake.accept(req, routing));
    let stored = queue.0.stored.lock().unwrap();
    match resp.status() {
        StatusCode::ACCEPTED => {
            assert_eq!(stored.len(), 1);
            let invocation = &stored[0];
            assert!(valid_id(&invocation.id), "{:?}", invocation.id);
            assert_eq!(
                resp.headers()[INVOCATION_ID_HEADER].as_bytes(),
                invocation.id.as_bytes()
            );
            assert!(targets.get(&invocation.target).is_some());
            assert!(invocation.body.len() <= MAX_BODY);
            for (name, _) in &invocation.headers {
                assert!(!NEVER_STORED.contains(&name.as_str()), "stored {name}");
                if !input.store_credentials {
                    assert!(name != "authorization" && name != "cookie", "stored {name}");
                }
            }
            let record = invocation.encode().unwrap();
            assert_eq!(&Invocation::decode(&record).unwrap(), invocation);
        }
        StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND | StatusCode::PAYLOAD_TOO_LARGE => {
            assert!(stored.is_empty());
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            assert!(stored.is_empty());
            assert!(resp.headers().contains_key(http::header::RETRY_AFTER));
        }
        other => panic!("unexpected answer {other}: {:?}", resp.body()),
    }
});
