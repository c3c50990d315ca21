//! The autoscaler's two signal sources agree on a real gateway under real
//! load: `flint dev` serves a function under steady concurrent load, a real
//! Prometheus server scrapes its gateway, and the PromQL source and the
//! direct source report the same concurrency and RPS within 10%.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use flint_api::backend::RevisionKey;
use flint_operator::autoscaler::source::MetricsSource;
use flint_operator::autoscaler::source::direct::DirectSource;
use flint_operator::autoscaler::source::prometheus::{PromQlConfig, PromQlSource};
use support::{Dev, free_port, temp_dir, write_function};

struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn within(a: f64, b: f64, pct: f64) -> bool {
    (a - b).abs() <= b.abs() * pct / 100.0
}

#[test]
fn promql_and_direct_sources_agree_on_a_real_gateway_under_load() {
    let dir = temp_dir("promql");
    write_function(
        &dir,
        "loaded",
        "hi",
        "  scale: {initial: 2, min: 2, max: 2}\n",
    );
    let dev = Dev::start(&dir);
    dev.wait_output(
        Duration::from_secs(60),
        "default/loaded-00001  replica 2 ready",
    );

    let port = free_port();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: flint-gateway\n    static_configs:\n      - targets: ['{}']\n",
            dev.admin
        ),
    )
    .unwrap();
    let prometheus = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the prometheus binary (Debian package `prometheus`; scripts/test installs it)");
    let _prometheus = Prometheus(prometheus);

    // Steady load: 4 clients, each always one 100 ms request in flight.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, gateway) = (stop.clone(), dev.gateway);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ =
                        support::get(gateway, "localhost", "/function/default/loaded/slow?ms=100");
                }
            })
        })
        .collect();

    let key = RevisionKey::new("default", "loaded", "loaded-00001");
    let keys = [key.clone()];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (from_prom, from_direct) = runtime.block_on(async {
        let mut promql = PromQlSource::new(PromQlConfig {
            url: format!("http://127.0.0.1:{port}"),
            range: Duration::from_secs(10),
            gateway_selector: r#"job="flint-gateway""#.into(),
            timeout: Duration::from_secs(2),
        });
        // Let a full rate window of load accumulate in Prometheus (bounded).
        let mut ready = false;
        for _ in 0..60 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            if let Ok(r) = promql.collect(&keys).await
                && r.get(&key).is_some_and(|r| r.rps > 0.0)
            {
                ready = true;
                break;
            }
        }
        assert!(ready, "Prometheus never reported a rate within 30 s");
        tokio::time::sleep(Duration::from_secs(11)).await;
        let mut direct = DirectSource::new(
            vec![format!("http://{}/metrics", dev.admin)],
            Duration::from_secs(2),
        );
        direct.collect(&keys).await.unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let from_direct = direct.collect(&keys).await.unwrap()[&key];
        let from_prom = promql.collect(&keys).await.unwrap()[&key];
        (from_prom, from_direct)
    });
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    assert!(
        from_direct.concurrency > 3.0 && from_direct.concurrency < 4.5,
        "{from_direct:?}"
    );
    assert!(
        within(from_prom.concurrency, from_direct.concurrency, 10.0),
        "{from_prom:?} vs {from_direct:?}"
    );
    assert!(
        within(from_prom.rps, from_direct.rps, 10.0),
        "{from_prom:?} vs {from_direct:?}"
    );
}
