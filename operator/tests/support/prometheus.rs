//! A real Prometheus server (Debian package `prometheus`) scraping test
//! exporters every second, on a free loopback port.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flint_operator::autoscaler::source::prometheus::{PromQlConfig, PromQlSource};

/// The running server; killed and its data removed on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    /// Where its HTTP API listens.
    pub port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` as job `flint-gateway`. Fails
    /// the test when the binary is missing: the test command installs it.
    pub fn start(targets: &[SocketAddr]) -> Self {
        let bin = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
            .into_iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .expect("the prometheus binary is not installed (apt-get install prometheus)");
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("flint-prom-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let list: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: flint-gateway\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, dir, port }
    }

    /// The PromQL source reading this server, with a 2 s timeout.
    pub fn source(&self) -> PromQlSource {
        promql_source(self.port, Duration::from_secs(2))
    }
}

/// A PromQL source for a Prometheus server on loopback `port`: the gateways
/// are the job `flint-gateway`, rates are taken over 5 s.
pub fn promql_source(port: u16, timeout: Duration) -> PromQlSource {
    PromQlSource::new(PromQlConfig {
        url: format!("http://127.0.0.1:{port}"),
        range: Duration::from_secs(5),
        gateway_selector: r#"job="flint-gateway""#.into(),
        timeout,
    })
}

/// A loopback port nothing listens on (at the time of asking).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
