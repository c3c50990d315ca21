//! `flint dev` end to end: the real binary, real child processes, real
//! sockets on 127.0.0.1.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use support::{Dev, get, pids_in, temp_dir, write_atomic, write_function};

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn an_invalid_manifest_is_reported_and_the_others_keep_serving() {
    let dir = temp_dir("invalid");
    write_function(&dir, "good", "hello", "");
    write_function(&dir, "bad", "x", "  scale: {min: 3, max: 2, initial: 2}\n");
    let dev = Dev::start(&dir);
    dev.wait_output(
        WAIT,
        "bad/function.yaml: function \"bad\": spec.scale.min: min (3) must not exceed max (2)",
    );
    let (status, body) = dev.call("good", "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("hello pid="), "{body}");
    let (status, body) = dev.call("bad", "/").unwrap();
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("bad"), "{body}");
}

#[test]
fn cold_start_is_reported_and_the_host_form_routes() {
    let dir = temp_dir("cold");
    write_function(&dir, "hello", "hi there", "  scale: {initial: 0}\n");
    let dev = Dev::start(&dir);
    assert!(
        pids_in(&dir).is_empty(),
        "a function at zero must run no process"
    );
    let (status, body) = get(dev.gateway, "hello.default.localhost", "/").unwrap();
    assert_eq!(status, 200);
    assert!(body.starts_with("hi there"), "{body}");
    dev.wait_output(WAIT, "cold     default/hello-00001  replica 1 ready in");
    assert_eq!(pids_in(&dir).len(), 1);
}

#[test]
fn an_edited_manifest_rolls_a_new_revision_without_failing_a_request() {
    let dir = temp_dir("rollout");
    write_function(&dir, "roll", "v1", "  scale: {initial: 1}\n");
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "cold     default/roll-00001");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad, saw_v2) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, bad, saw_v2) = (stop.clone(), ok.clone(), bad.clone(), saw_v2.clone());
            let gateway = dev.gateway;
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match get(gateway, "localhost", "/function/default/roll/") {
                        Ok((200, body)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                            if body.starts_with("v2") {
                                saw_v2.store(true, Ordering::Relaxed);
                            }
                        }
                        other => {
                            eprintln!("failed request: {other:?}");
                            bad.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let manifest = dir.join("roll/function.yaml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("value: \"v1\"", "value: \"v2\"");
    write_atomic(&manifest, &text);
    dev.wait_output(WAIT, "traffic default/roll: 100% roll-00002");
    dev.wait_for(WAIT, "answers from v2", || saw_v2.load(Ordering::Relaxed));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(
        bad.load(Ordering::Relaxed),
        0,
        "requests failed during the rollout:\n{}",
        dev.output()
    );
    assert!(ok.load(Ordering::Relaxed) > 20);
    let (_, body) = dev.call("roll", "/").unwrap();
    assert!(body.starts_with("v2"), "{body}");
}

#[test]
fn a_crashing_process_is_restarted_reported_and_isolated() {
    let dir = temp_dir("crash");
    write_function(&dir, "crashy", "alive", "  scale: {initial: 1}\n");
    write_function(&dir, "steady", "steady", "  scale: {initial: 1}\n");
    let dev = Dev::start(&dir);
    dev.wait_output(WAIT, "cold     default/crashy-00001");
    dev.wait_output(WAIT, "cold     default/steady-00001");
    let (status, body) = dev.call("crashy", "/crash").unwrap();
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("crashy"), "{body}");
    dev.wait_output(
        WAIT,
        "crash    default/crashy-00001  replica 1: process exit status: 1",
    );
    dev.wait_output(WAIT, "default/crashy-00001  replica 2 ready");
    let (status, body) = dev.call("crashy", "/").unwrap();
    assert_eq!((status, body.starts_with("alive")), (200, true), "{body}");
    let (status, body) = dev.call("steady", "/").unwrap();
    assert_eq!((status, body.starts_with("steady")), (200, true), "{body}");
    assert!(
        !dev.output().contains("steady-00001  replica 1: process"),
        "{}",
        dev.output()
    );
}

#[test]
fn a_command_that_fails_at_start_gets_503_with_the_reason_and_a_fix_recovers() {
    let dir = temp_dir("broken");
    write_function(
        &dir,
        "broken",
        "ok",
        "  args: [--missing-flag]\n  scale: {initial: 0}\n",
    );
    // The test app ignores args; make this one exit at start instead.
    std::fs::write(
        dir.join("broken/app.py"),
        "import sys\nprint('cannot load model.bin', file=sys.stderr)\nsys.exit(4)\n",
    )
    .unwrap();
    let dev = Dev::start(&dir);
    let (status, body) = dev.call("broken", "/").unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body.trim_end(),
        "revision broken-00001 failed: process exit status: 4; last output: cannot load model.bin"
    );
    std::fs::write(dir.join("broken/app.py"), support::APP).unwrap();
    let manifest = dir.join("broken/function.yaml");
    let text = std::fs::read_to_string(&manifest)
        .unwrap()
        .replace("--missing-flag", "--fixed");
    write_atomic(&manifest, &text);
    dev.wait_output(WAIT, "traffic default/broken: 100% broken-00002");
    let (status, body) = dev.call("broken", "/").unwrap();
    assert_eq!(status, 200, "{body}");
}

#[test]
fn sigint_and_sigterm_leave_no_child_process() {
    for signal in ["INT", "TERM"] {
        let dir = temp_dir(&format!("signal-{signal}"));
        write_function(&dir, "one", "1", "  scale: {initial: 2}\n");
        write_function(&dir, "two", "2", "  scale: {initial: 1}\n");
        let mut dev = Dev::start(&dir);
        dev.wait_for(WAIT, "three replicas", || pids_in(&dir).len() == 3);
        assert!(
            dev.stop_with(signal, Duration::from_secs(30)),
            "flint dev did not exit on SIG{signal}"
        );
        assert!(
            dev.output().contains("flint dev: stopped"),
            "{}",
            dev.output()
        );
        assert_eq!(
            pids_in(&dir),
            Vec::<u32>::new(),
            "processes left after SIG{signal}"
        );
    }
}
