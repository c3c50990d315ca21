//! `flint dev` honours the pod-template fields a local process can: the
//! readiness probe gates traffic to a replica, and the environment comes
//! from a Secret manifest and a `.env` file next to the Function's manifest,
//! in its `workingDir`. The real binary, real child processes.

mod support;

use std::sync::mpsc;
use std::time::Duration;

use support::{Dev, temp_dir, write_atomic};

const WAIT: Duration = Duration::from_secs(60);

/// Answers `/ready` with 503 until a file `ready-flag` exists in its
/// working directory; `/` with its environment, logging each such request
/// to `served.log`. Writes `started` once it listens.
const GATED_APP: &str = r#"
import os
from http.server import BaseHTTPRequestHandler, HTTPServer
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/ready":
            code = 200 if os.path.exists("ready-flag") else 503
            self.send_response(code); self.send_header("Content-Length", "0"); self.end_headers()
            return
        with open("served.log", "a") as f:
            f.write(self.path + "\n")
        body = ("token=%s mode=%s cwd=%s" % (os.environ.get("TOKEN"), os.environ.get("MODE"), os.path.basename(os.getcwd()))).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
s = HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H)
open("started", "w").close()
s.serve_forever()
"#;

#[test]
fn readiness_probe_gates_traffic_and_env_comes_from_a_secret_manifest() {
    let dir = temp_dir("local-probe");
    let fdir = dir.join("gated");
    let app_dir = fdir.join("srv");
    std::fs::create_dir_all(&app_dir).unwrap();
    std::fs::write(app_dir.join("app.py"), GATED_APP).unwrap();
    // base64("s3cr3t")
    std::fs::write(
        fdir.join("secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\ndata:\n  token: czNjcjN0\n",
    )
    .unwrap();
    std::fs::write(fdir.join(".env"), "# local settings\nMODE=dev\n").unwrap();
    write_atomic(
        &fdir.join("function.yaml"),
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: gated\nspec:\n  image: test/gated:1\n  command: [python3, app.py]\n  workingDir: /srv\n  env:\n    - name: TOKEN\n      valueFrom: {secretKeyRef: {name: creds, key: token}}\n  readinessProbe:\n    httpGet: {path: /ready, port: http}\n    periodSeconds: 1\n  timeoutSeconds: 30\n  scale: {initial: 1}\n",
    );
    let dev = Dev::start(&dir);
    dev.wait_for(WAIT, "the app to listen", || {
        app_dir.join("started").exists()
    });

    // Listening but not ready: a request waits, and nothing reaches the app.
    let (tx, rx) = mpsc::channel();
    let gateway = dev.gateway;
    std::thread::spawn(move || {
        let _ = tx.send(support::get(
            gateway,
            "localhost",
            "/function/default/gated/hello",
        ));
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        rx.try_recv().is_err(),
        "a request was answered before the replica passed its readiness probe"
    );
    assert!(
        !app_dir.join("served.log").exists(),
        "the app got a request before it was ready"
    );
    assert!(
        !dev.output().contains("replica 1 ready"),
        "{}",
        dev.output()
    );

    // Ready: the waiting request goes through, with the Secret's value.
    std::fs::write(app_dir.join("ready-flag"), "").unwrap();
    let (status, body) = rx
        .recv_timeout(WAIT)
        .expect("the waiting request is answered")
        .expect("HTTP answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "token=s3cr3t mode=dev cwd=srv");
    dev.wait_output(WAIT, "default/gated-00001  replica 1 ready in");
    let served = std::fs::read_to_string(app_dir.join("served.log")).unwrap();
    assert_eq!(served, "/hello\n");

    // Failing its probe again, the replica leaves the rotation.
    std::fs::remove_file(app_dir.join("ready-flag")).unwrap();
    dev.wait_output(
        WAIT,
        "unready  default/gated-00001  replica 1: readiness probe failed 3 times in a row: GET /ready: HTTP 503; out of rotation",
    );
    std::fs::write(app_dir.join("ready-flag"), "").unwrap();
    dev.wait_output(
        WAIT,
        "ready    default/gated-00001  replica 1 passes its readiness probe again",
    );
    let (status, _) = dev.call("gated", "/again").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn a_missing_secret_is_refused_naming_the_function_field_and_object() {
    let dir = temp_dir("local-missing");
    let fdir = dir.join("lost");
    std::fs::create_dir_all(&fdir).unwrap();
    write_atomic(
        &fdir.join("function.yaml"),
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata:\n  name: lost\nspec:\n  image: test/lost:1\n  command: [python3, app.py]\n  envFrom:\n    - secretRef: {name: nowhere}\n",
    );
    let dev = Dev::start(&dir);
    dev.wait_output(
        WAIT,
        "lost/function.yaml: function default/lost: spec.envFrom[0].secretRef: Secret \"nowhere\" not found",
    );
}
