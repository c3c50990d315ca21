//! Helpers for end-to-end tests that run the real `flint` binary: temp
//! manifest directories, a running `flint dev`, a tiny HTTP client.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A Python app that answers with `$GREETING`, exits on `/crash`, sleeps on
/// `/slow?ms=`, and on `/headers` answers with the request headers it got
/// (one `Name: value` line each) after the greeting line.
pub const APP: &str = r#"
import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        if self.path.startswith("/crash"):
            os._exit(1)
        if self.path.startswith("/slow"):
            time.sleep(int(self.path.split("ms=")[1]) / 1000)
        body = (os.environ.get("GREETING", "hi") + " pid=" + str(os.getpid())).encode()
        if self.path.startswith("/headers"):
            body += ("\n" + "".join("%s: %s\n" % kv for kv in self.headers.items())).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
s.daemon_threads = True
s.serve_forever()
"#;

/// A Python app for fault tests: sleeps `START_DELAY_MS` before it listens;
/// appends `start <pid> <id>` to `$REQUEST_LOG` (if set) when a request
/// arrives; reads any request body; sleeps `?ms=`; answers
/// `$GREETING pid=<pid> id=<id> got=<body bytes>` to GET and POST. Its
/// listen backlog is large, so a released backlog is not held up in SYN
/// retries (Python's default is 5).
pub const FAULT_APP: &str = r#"
import os, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs
time.sleep(int(os.environ.get("START_DELAY_MS", "0")) / 1000)
LOG = os.environ.get("REQUEST_LOG")
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self):
        q = parse_qs(urlparse(self.path).query)
        rid = q.get("id", ["-"])[0]
        if LOG:
            with open(LOG, "a") as f:
                f.write("start %d %s\n" % (os.getpid(), rid))
        n = int(self.headers.get("Content-Length") or 0)
        got = len(self.rfile.read(n)) if n else 0
        time.sleep(int(q.get("ms", ["0"])[0]) / 1000)
        body = ("%s pid=%d id=%s got=%d" % (os.environ.get("GREETING", "hi"), os.getpid(), rid, got)).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    do_GET = answer
    do_POST = answer
    def log_message(self, *a): pass
ThreadingHTTPServer.request_queue_size = 1024
s = ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
s.daemon_threads = True
s.serve_forever()
"#;

/// Writes a function directory running [`FAULT_APP`]; `env` is added to
/// the manifest's environment (`GREETING` is set to `greeting`).
pub fn write_fault_function(
    dir: &Path,
    name: &str,
    greeting: &str,
    env: &[(&str, &str)],
    extra_spec: &str,
) {
    let fdir = dir.join(name);
    std::fs::create_dir_all(&fdir).unwrap();
    std::fs::write(fdir.join("app.py"), FAULT_APP).unwrap();
    let mut vars = format!("{{name: GREETING, value: \"{greeting}\"}}");
    for (k, v) in env {
        vars.push_str(&format!(", {{name: {k}, value: \"{v}\"}}"));
    }
    let manifest = format!(
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  image: test/{name}:1\n  command: [python3, app.py]\n  env: [{vars}]\n  timeoutSeconds: 20\n{extra_spec}"
    );
    write_atomic(&fdir.join("function.yaml"), &manifest);
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flint-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes a function directory with the test app and a manifest.
pub fn write_function(dir: &Path, name: &str, greeting: &str, extra_spec: &str) {
    let fdir = dir.join(name);
    std::fs::create_dir_all(&fdir).unwrap();
    std::fs::write(fdir.join("app.py"), APP).unwrap();
    let manifest = format!(
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: {name}\nspec:\n  image: test/{name}:1\n  command: [python3, app.py]\n  env: [{{name: GREETING, value: \"{greeting}\"}}]\n  timeoutSeconds: 20\n{extra_spec}"
    );
    write_atomic(&fdir.join("function.yaml"), &manifest);
}

/// Replaces a file in one step, so a watcher never reads half of it.
pub fn write_atomic(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// A free loopback port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running `flint dev`, stopped (SIGTERM) when dropped.
pub struct Dev {
    pub child: Child,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    /// The in-cluster port (`--internal-port`), where cluster-local Functions answer.
    pub internal: SocketAddr,
    /// The TLS port (`--tls-port`).
    pub tls: SocketAddr,
    pub output: Arc<Mutex<String>>,
}

impl Dev {
    /// Starts `flint dev DIR` on free ports and waits until its admin port answers.
    pub fn start(dir: &Path) -> Dev {
        Self::start_with(dir, free_port(), &[], &[])
    }

    /// As [`Dev::start`], with the admin port chosen by the caller, extra
    /// command-line arguments and extra environment variables. Every port
    /// is a free one (the in-cluster and TLS ports too: their defaults,
    /// 8082 and 8443, would collide between tests running at once).
    pub fn start_with(dir: &Path, ap: u16, args: &[&str], env: &[(&str, &str)]) -> Dev {
        let (gp, ip, tp) = (free_port(), free_port(), free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_flint"))
            .args([
                "dev",
                dir.to_str().unwrap(),
                "--port",
                &gp.to_string(),
                "--admin-port",
                &ap.to_string(),
                "--internal-port",
                &ip.to_string(),
                "--tls-port",
                &tp.to_string(),
            ])
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let output = Arc::clone(&output);
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push_str(&(line + "\n"));
                }
            });
        }
        let dev = Dev {
            child,
            gateway: ([127, 0, 0, 1], gp).into(),
            admin: ([127, 0, 0, 1], ap).into(),
            internal: ([127, 0, 0, 1], ip).into(),
            tls: ([127, 0, 0, 1], tp).into(),
            output,
        };
        dev.wait_for(Duration::from_secs(30), "admin port up", || {
            get(dev.admin, "localhost", "/healthz").is_ok_and(|r| r.0 == 200)
        });
        dev
    }

    /// Everything `flint dev` printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Polls `cond` until it holds or `timeout` passes (then panics with the output).
    pub fn wait_for(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting for {what}; flint dev printed:\n{}",
            self.output()
        );
    }

    /// Waits until the output contains `text`.
    pub fn wait_output(&self, timeout: Duration, text: &str) {
        self.wait_for(timeout, &format!("output {text:?}"), || {
            self.output().contains(text)
        });
    }

    /// GET through the gateway's path form.
    pub fn call(&self, function: &str, path: &str) -> std::io::Result<(u16, String)> {
        get(
            self.gateway,
            "localhost",
            &format!("/function/default/{function}{path}"),
        )
    }

    /// Sends `signal` and waits for exit; returns whether it exited within `timeout`.
    pub fn stop_with(&mut self, signal: &str, timeout: Duration) -> bool {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop_with("TERM", Duration::from_secs(15));
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A blocking HTTP/1.1 GET with `Connection: close`; returns status and body.
pub fn get(addr: SocketAddr, host: &str, path: &str) -> std::io::Result<(u16, String)> {
    get_with(addr, host, path, &[]).map(|(status, _, body)| (status, body))
}

/// As [`get`], sending `headers` too; returns the status, the response
/// head (status line and headers) and the body.
pub fn get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let extra: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    s.read_to_string(&mut raw)?;
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad response: {raw:?}")))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    Ok((status, head, body))
}

/// PIDs of processes whose working directory is under `dir` (the replicas of its functions).
pub fn pids_in(dir: &Path) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(cwd) = std::fs::read_link(entry.path().join("cwd"))
            && cwd.starts_with(dir)
        {
            out.push(pid);
        }
    }
    out
}

/// Resident memory of a process in KiB (VmRSS from /proc/<pid>/status).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A counter or gauge from `flint dev`'s admin `/metrics`: the sum of every
/// series of `name` whose labels contain each of `labels` (`key="value"`).
pub fn metric(admin: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let (status, text) = get(admin, "localhost", "/metrics").unwrap();
    assert_eq!(status, 200, "{text}");
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            (series == &name || series.starts_with(&format!("{name}{{")))
                && labels.iter().all(|want| series.contains(want))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap())
        .sum()
}
