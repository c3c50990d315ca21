//! The request path's second step: a routed request ([`Target`]) to one of
//! its revision's replicas. [`proxy`] answers for a failed revision at
//! once, rewrites the request for the hop, waits for a slot on a replica
//! (the activator: poking the autoscaler when the revision is at zero),
//! sends the request, trying other replicas while nothing was written,
//! all within the revision's timeout, and streams the answer back holding
//! the slot, or hands an upgraded connection to its tunnel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flint_api::Protocol;
use flint_api::poke::ScalePoke;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use rand::Rng;

use super::Shared;
use super::body::{self, GatewayBody, InFlight, RequestBody, RequestGuard, Tracked};
use super::error::ProxyError;
use super::pool::Conn;
use super::revision::{Refused, RevisionState, Slot, Upstream};
use super::rewrite::{self, Forwarding};
use super::route::{Settings, Target};
use super::server::{Client, Pace, Stall, Tunnel};
use crate::budget::{Charge, Use, head_bytes};

/// Most replicas tried for one request when connections are refused.
const MAX_ATTEMPTS: usize = 4;

/// Proxies `req`, which came on `client`'s connection, to `target`. The
/// request is counted for its revision from here; a refusal is counted
/// (and logged) under its status before it is returned.
pub(super) async fn proxy(
    client: &Client,
    target: Target,
    req: Request<Incoming>,
) -> Result<Response<GatewayBody>, ProxyError> {
    let Target {
        state,
        settings,
        failure,
        hop,
        guarded: _,
    } = target;
    let shared = &client.shared;
    let clients = &shared.config.clients;
    let stall = Stall::new(clients.io_timeout);
    let pace = clients.min_body_rate.map(Pace::new);
    let mut req = req.map(|body| RequestBody::new(body, stall, pace));
    let guard = RequestGuard::start(state);
    // Up to the replica's response head; any refusal on the way is counted
    // under its status once, below.
    let exchanged = async {
        let state = guard.revision();
        if let Some(message) = failure.filter(|_| state.replicas() == 0) {
            return Err(ProxyError::RevisionFailed {
                revision: state.key.revision.clone(),
                message,
            });
        }
        let client_upgrade = hop.upgrade.then(|| hyper::upgrade::on(&mut req));
        let fwd = Forwarding {
            client_ip: &client.ip,
            host: &hop.host,
            prefix_len: hop.prefix_len,
            protocol: settings.protocol,
            upgrade: hop.upgrade,
            trusted: client.trusted,
            tls: client.tls,
        };
        rewrite::rewrite_request(&mut req, fwd)
            .map_err(|err| ProxyError::BadRequest(err.to_string()))?;
        let forward = Forward {
            shared,
            state,
            settings,
        };
        let answered = forward.within_timeout(req, guard.started()).await?;
        Ok::<_, ProxyError>((answered, client_upgrade))
    }
    .await;
    match exchanged {
        Ok((answered, client_upgrade)) => Ok(respond(client, guard, answered, client_upgrade)),
        Err(err) => Err(refused(guard, err)),
    }
}

/// Counts a refused request under its status and logs it: failures of a
/// replica as warnings, the other refusals for debugging.
fn refused(mut guard: RequestGuard, err: ProxyError) -> ProxyError {
    guard.set_code(err.status().as_u16());
    let key = guard.key();
    match err {
        ProxyError::Connect { .. } | ProxyError::Upstream { .. } => {
            tracing::warn!(namespace = %key.namespace, function = %key.function, error = %err, kind = err.metric_label(), "request failed");
        }
        _ => {
            tracing::debug!(namespace = %key.namespace, function = %key.function, error = %err, kind = err.metric_label(), "request refused");
        }
    }
    err
}

/// The replica's answer to a request, with what it holds until the answer
/// ends: the connection it came on and the replica slot.
struct Answered {
    resp: Response<Incoming>,
    conn: Conn,
    slot: Slot,
}

/// The client's response: the replica's, streamed back holding the slot,
/// the connection and the request's count until its end; or, for a
/// protocol switch both sides agreed to, the 101 alone, the connection
/// going on as a tunnel that holds them.
fn respond(
    client: &Client,
    mut guard: RequestGuard,
    answered: Answered,
    client_upgrade: Option<OnUpgrade>,
) -> Response<GatewayBody> {
    let Answered {
        mut resp,
        conn,
        slot,
    } = answered;
    guard.set_code(resp.status().as_u16());
    rewrite::rewrite_response(&mut resp);
    if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_upgrade) = client_upgrade
    {
        let replica_upgrade = hyper::upgrade::on(&mut resp);
        if let Conn::Http1(conn) = conn {
            conn.detach();
        }
        let held = InFlight {
            conn: None,
            slot,
            _guard: guard,
            complete: false,
        };
        // The client connection carries on with it once hyper lets go.
        client.set_tunnel(Tunnel {
            client: client_upgrade,
            replica: replica_upgrade,
            held,
        });
        return resp.map(|_| body::empty());
    }
    let held = InFlight {
        conn: Some(conn),
        slot,
        _guard: guard,
        complete: false,
    };
    resp.map(|incoming| http_body_util::BodyExt::boxed_unsync(Tracked::new(incoming, held)))
}

/// Two draws for the balancer's power of two choices.
fn draw() -> (usize, usize) {
    let mut rng = rand::rng();
    (rng.random::<u64>() as usize, rng.random::<u64>() as usize)
}

/// One request's way to a replica of its revision: what every attempt
/// needs besides the request itself.
struct Forward<'a> {
    shared: &'a Shared,
    state: &'a Arc<RevisionState>,
    settings: Settings,
}

impl Forward<'_> {
    /// [`Forward::run`], given up at the revision's timeout counted from
    /// `started` (when the request was routed).
    async fn within_timeout(
        &self,
        req: Request<RequestBody>,
        started: Instant,
    ) -> Result<Answered, ProxyError> {
        let seconds = self.settings.timeout_seconds;
        if seconds == 0 {
            return self.run(req).await;
        }
        let limit = Duration::from_secs(u64::from(seconds));
        let deadline = tokio::time::Instant::from_std(started) + limit;
        match tokio::time::timeout_at(deadline, self.run(req)).await {
            Ok(answered) => answered,
            Err(_) => Err(ProxyError::Timeout {
                revision: self.state.key.revision.clone(),
                seconds,
            }),
        }
    }

    /// Waits for a slot and sends the request, retrying on other replicas
    /// only while the request has not been written (refused or reset
    /// connections), at most [`MAX_ATTEMPTS`] replicas in all.
    async fn run(&self, mut req: Request<RequestBody>) -> Result<Answered, ProxyError> {
        let protocol = self.settings.protocol;
        let mut slot = self.first_slot(&req).await?;
        let stalled = match protocol {
            Protocol::H2c => req.body_mut().report_failure(),
            Protocol::Http1 => None,
        };
        let mut tried = Vec::new();
        loop {
            let failed = match slot.upstream.pool.checkout(protocol).await {
                Ok(mut conn) => match send_on(&mut conn, req).await {
                    Ok(resp) => return Ok(Answered { resp, conn, slot }),
                    Err((source, None)) => {
                        let clients = &self.shared.config.clients;
                        let body_failure = RequestBody::failure(&source).or_else(|| {
                            stalled.as_ref().and_then(|flag| {
                                RequestBody::flagged(
                                    flag,
                                    clients.io_timeout,
                                    clients.min_body_rate,
                                )
                            })
                        });
                        return Err(body_failure.unwrap_or_else(|| ProxyError::Upstream {
                            revision: self.state.key.revision.clone(),
                            endpoint: slot.upstream.endpoint.id.clone(),
                            source,
                        }));
                    }
                    Err((source, Some(unsent))) => {
                        req = unsent;
                        std::io::Error::other(source)
                    }
                },
                Err(err) => err.into_io(),
            };
            tracing::debug!(revision = %self.state.key.revision, endpoint = %slot.upstream.endpoint.id, error = %failed, "replica refused; trying another");
            tried.push(Arc::clone(&slot.upstream));
            drop(slot);
            if tried.len() >= MAX_ATTEMPTS {
                return Err(self.connect_failed(failed));
            }
            // Nothing was sent: the request waits again, in the queue and
            // within its timeout, for a slot on a replica it has not tried.
            slot = match self.next_slot(&req, &tried).await {
                Ok(next) => next,
                Err(Refused::Exhausted) => return Err(self.connect_failed(failed)),
                Err(other) => return Err(self.refused(other)),
            };
        }
    }

    /// A slot on any replica with room, waiting in the revision's queue
    /// (and poking the autoscaler when the revision is at zero).
    async fn first_slot(&self, req: &Request<RequestBody>) -> Result<Slot, ProxyError> {
        let key = &self.state.key;
        let poke = |waiting| {
            self.shared.poke.poke(ScalePoke {
                namespace: key.namespace.clone(),
                function: key.function.clone(),
                revision: key.revision.clone(),
                waiting,
            });
        };
        self.state
            .acquire(
                self.settings.concurrency,
                self.shared.config.queue_size,
                draw,
                poke,
                || self.admit(req),
            )
            .await
            .map_err(|refused| self.refused(refused))
    }

    /// A slot on a replica not in `tried`, waiting in the revision's queue.
    async fn next_slot(
        &self,
        req: &Request<RequestBody>,
        tried: &[Arc<Upstream>],
    ) -> Result<Slot, Refused> {
        self.state
            .reacquire(
                self.settings.concurrency,
                self.shared.config.queue_size,
                tried,
                || self.admit(req),
            )
            .await
    }

    /// Charges the memory budget for `req` waiting; called only if it has
    /// to wait, and held while it does.
    fn admit(&self, req: &Request<RequestBody>) -> Result<Charge, Refused> {
        self.shared
            .budget
            .charge(Use::WaitingRequest, head_bytes(req))
            .map_err(Refused::OverBudget)
    }

    /// Every replica tried refused the connection; `source` is the last
    /// refusal.
    fn connect_failed(&self, source: std::io::Error) -> ProxyError {
        ProxyError::Connect {
            revision: self.state.key.revision.clone(),
            source,
        }
    }

    /// Why waiting for a slot ended without one.
    fn refused(&self, refused: Refused) -> ProxyError {
        let revision = || self.state.key.revision.clone();
        match refused {
            Refused::Full(full) => ProxyError::QueueFull {
                revision: revision(),
                queued: full.queued,
            },
            Refused::Failed(message) => ProxyError::RevisionFailed {
                revision: revision(),
                message,
            },
            Refused::Exhausted => {
                self.connect_failed(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
            }
            Refused::OverBudget(over) => ProxyError::OverBudget(over),
        }
    }
}

/// Sends `req` on `conn`. On failure, the request comes back when it was
/// never written, so it may safely go to another replica.
async fn send_on(
    conn: &mut Conn,
    req: Request<RequestBody>,
) -> Result<Response<Incoming>, (hyper::Error, Option<Request<RequestBody>>)> {
    let sent = match conn {
        Conn::Http1(c) => c.send(req).await,
        Conn::Http2(c) => c.try_send_request(req).await,
    };
    sent.map_err(|mut err| {
        let req = err.take_message();
        (err.into_error(), req)
    })
}
