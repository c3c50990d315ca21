//! Asynchronous invocations in `flint dev`: accepted with 202 while the
//! function is at zero, delivered through the gateway (waking it), and kept
//! across a restart of `flint dev`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::{Dev, temp_dir};

/// An app that appends each request's path to `calls.log` in its directory.
const RECORDER: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n).decode()
        with open("calls.log", "a") as f:
            f.write(self.path + " " + body + "\n")
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
"#;

fn post_async(dev: &Dev, path: &str, body: &str) -> (u16, String) {
    let mut s = TcpStream::connect(dev.gateway).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nPrefer: respond-async\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw)
}

#[test]
fn async_invocations_wake_the_function_and_are_not_redelivered_after_a_restart() {
    let dir = temp_dir("async");
    let fdir = dir.join("rec");
    std::fs::create_dir_all(&fdir).unwrap();
    std::fs::write(fdir.join("app.py"), RECORDER).unwrap();
    std::fs::write(
        fdir.join("function.yaml"),
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {name: rec}\nspec:\n  image: test/rec:1\n  command: [python3, app.py]\n  scale: {initial: 0}\n",
    )
    .unwrap();
    let log = fdir.join("calls.log");
    let calls = || std::fs::read_to_string(&log).unwrap_or_default();

    let dev = Dev::start(&dir);
    let (status, raw) = post_async(&dev, "/function/default/rec/job", "first");
    assert_eq!(status, 202, "{raw}");
    dev.wait_for(
        Duration::from_secs(60),
        "the async invocation to be delivered",
        || calls().contains("/job first"),
    );
    drop(dev);

    // Accepted while flint dev runs, delivered after a restart: the store is durable.
    let dev = Dev::start(&dir);
    let (status, raw) = post_async(&dev, "/function/default/rec/again", "second");
    assert_eq!(status, 202, "{raw}");
    dev.wait_for(Duration::from_secs(60), "the second invocation", || {
        calls().contains("/again second")
    });
    assert_eq!(
        calls().lines().filter(|l| l.contains("/job first")).count(),
        1,
        "delivered twice:\n{}",
        calls()
    );
}
