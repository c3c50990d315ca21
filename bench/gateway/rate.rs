//! A constant-rate HTTP/1.1 load generator: requests leave on a fixed
//! schedule spread over keep-alive connections, whatever the answers do.
//! Each latency runs from the moment the request is written. At 1,000
//! req/s over 16 connections a connection sends every 16 ms, far longer
//! than any answer here, so no request waits for the previous one. Requests
//! that left late because the generator itself was not scheduled in time
//! are counted (`late`) rather than folded into the latencies.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::BenchError;

/// A header given as wrk's `-H` takes it: `Name: value`.
pub fn header(line: &str) -> Result<(HeaderName, HeaderValue), BenchError> {
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| format!("header {line:?}: expected `Name: value`"))?;
    Ok((
        HeaderName::from_bytes(name.trim().as_bytes())?,
        HeaderValue::from_str(value.trim())?,
    ))
}

/// Sends `rps` requests per second for `seconds` over `conns` connections
/// (after one second of warm-up at the same rate), each with `header` if
/// given, and returns a one-line report: count, errors (anything but a 2xx
/// answer read to its end), requests sent more than 2 ms late, and latency
/// percentiles in microseconds.
pub async fn run(
    target: SocketAddr,
    host: String,
    rps: u64,
    seconds: u64,
    conns: u64,
    header: Option<(HeaderName, HeaderValue)>,
) -> Result<String, BenchError> {
    let interval = Duration::from_nanos(1_000_000_000 / rps);
    // Each connection sends every `conns`-th request of the schedule.
    let step = interval * u32::try_from(conns).unwrap_or(u32::MAX);
    let warmup = rps;
    let total = rps * (seconds + 1);
    let start = Instant::now() + Duration::from_millis(100);
    let tasks: Vec<_> = (0..conns)
        .map(|c| {
            let host = host.clone();
            let header = header.clone();
            tokio::spawn(async move {
                let stream = TcpStream::connect(target).await?;
                stream.set_nodelay(true)?;
                let (mut sender, conn) =
                    hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
                tokio::spawn(conn);
                let mut latencies = Vec::new();
                let mut errors = 0u64;
                let mut late = 0u64;
                let mut i = c;
                let mut at = start + interval * u32::try_from(c).unwrap_or(0);
                while i < total {
                    tokio::time::sleep_until(at.into()).await;
                    let mut req = hyper::Request::get("/")
                        .header("host", &host)
                        .body(Empty::<Bytes>::new())?;
                    if let Some((name, value)) = &header {
                        req.headers_mut().insert(name.clone(), value.clone());
                    }
                    let sent = Instant::now();
                    let ok = match sender.send_request(req).await {
                        Ok(resp) => {
                            resp.status().is_success() && resp.into_body().collect().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    let took = sent.elapsed();
                    if i >= warmup {
                        if sent > at + Duration::from_millis(2) {
                            late += 1;
                        }
                        if ok {
                            latencies.push(took);
                        } else {
                            errors += 1;
                        }
                    }
                    i += conns;
                    at += step;
                }
                Ok::<_, BenchError>((latencies, errors, late))
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut errors = 0;
    let mut late = 0;
    for t in tasks {
        let (l, e, n) = t.await??;
        all.extend(l);
        errors += e;
        late += n;
    }
    all.sort();
    let pct = |p: f64| -> f64 {
        if all.is_empty() {
            return f64::NAN;
        }
        let i = ((all.len() as f64 - 1.0) * p).round() as usize;
        all[i].as_secs_f64() * 1e6
    };
    Ok(format!(
        "count={} errors={errors} late={late} p50={:.0} p90={:.0} p99={:.0} p999={:.0} max={:.0}",
        all.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(0.999),
        pct(1.0)
    ))
}
