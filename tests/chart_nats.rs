//! The chart's NATS server requires a token and bounds its store: the
//! token Secret reaches the server (nats.conf's `authorization`) and the
//! gateway, and the byte budget of Flint's streams is derived from the
//! volume, inside JetStream's own cap. The rendered nats.conf is run with a
//! real nats-server, which refuses a client without the token. Renders the
//! chart with the real `helm`.

mod chart_support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use chart_support::{container, env, find, object, render, s, try_render};
use serde_yaml::Value;

const GIB: u64 = 1 << 30;

fn deployed(extra: &[&'static str]) -> Vec<Value> {
    let mut args = vec!["--set", "events.nats.deploy=true"];
    args.extend_from_slice(extra);
    render(&args)
}

fn nats_conf(objects: &[Value]) -> String {
    s(
        object(objects, "ConfigMap", "flint-nats"),
        &["data", "nats.conf"],
    )
    .to_owned()
}

/// The integer after `key:` in nats.conf.
fn conf_number(conf: &str, key: &str) -> u64 {
    conf.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {conf}"))
}

fn gateway(objects: &[Value]) -> &Value {
    container(object(objects, "Deployment", "flint-gateway"))
}

/// The Secret (name, key) an environment variable is taken from.
fn secret_ref(container: &Value, name: &str) -> (String, String) {
    let var = env(container, name).unwrap_or_else(|| panic!("no {name}"));
    let r = &var["valueFrom"]["secretKeyRef"];
    (s(r, &["name"]).to_owned(), s(r, &["key"]).to_owned())
}

fn max_bytes(objects: &[Value]) -> u64 {
    s(
        env(gateway(objects), "FLINT_NATS_MAX_BYTES").expect("FLINT_NATS_MAX_BYTES"),
        &["value"],
    )
    .parse()
    .unwrap()
}

/// Standard base64 (as Secret data is written).
fn base64(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).expect("base64") as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    out
}

#[test]
fn the_deployed_server_requires_the_token_the_gateway_presents() {
    let objects = deployed(&[]);
    let secret = object(&objects, "Secret", "flint-nats-auth");
    let token = String::from_utf8(base64(s(secret, &["data", "token"]))).unwrap();
    assert_eq!(token.len(), 48);
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric()));
    assert!(
        token.starts_with(|c: char| c.is_ascii_alphabetic()),
        "NATS would read a leading digit as a number: {token}"
    );
    let conf = nats_conf(&objects);
    assert!(
        conf.contains("authorization {\n  token: $NATS_TOKEN\n}"),
        "{conf}"
    );
    let server = container(object(&objects, "StatefulSet", "flint-nats"));
    assert_eq!(
        secret_ref(server, "NATS_TOKEN"),
        ("flint-nats-auth".into(), "token".into())
    );
    assert_eq!(
        secret_ref(gateway(&objects), "FLINT_NATS_TOKEN"),
        ("flint-nats-auth".into(), "token".into())
    );
}

#[test]
fn the_streams_fit_inside_the_volume() {
    // Default volume, 10Gi: JetStream may use 90%, Flint's streams 80%.
    let objects = deployed(&[]);
    let conf = nats_conf(&objects);
    assert_eq!(conf_number(&conf, "max_file_store"), 10 * GIB * 9 / 10);
    assert_eq!(max_bytes(&objects), 10 * GIB * 4 / 5);
    // They follow the volume, persistent or not.
    for extra in [
        ["--set", "events.nats.persistence.size=2Gi"],
        ["--set", "events.nats.persistence.enabled=false"],
    ] {
        let objects = deployed(&extra);
        let size = if extra[1].contains("2Gi") {
            2 * GIB
        } else {
            10 * GIB
        };
        assert_eq!(
            conf_number(&nats_conf(&objects), "max_file_store"),
            size * 9 / 10
        );
        assert_eq!(max_bytes(&objects), size * 4 / 5);
    }
    // An explicit budget is taken as given, within the store.
    let objects = deployed(&["--set", "events.nats.maxBytes=1Gi"]);
    assert_eq!(max_bytes(&objects), GIB);
    let err = try_render(&[
        "--set",
        "events.nats.deploy=true",
        "--set",
        "events.nats.maxBytes=10Gi",
    ])
    .unwrap_err();
    assert!(
        err.contains("events.nats.maxBytes (10Gi) exceeds") && err.contains("90%"),
        "{err}"
    );
    let err = try_render(&[
        "--set",
        "events.nats.deploy=true",
        "--set",
        "events.nats.maxBytes=1Mi",
    ])
    .unwrap_err();
    assert!(err.contains("below 4Mi"), "{err}");
}

#[test]
fn an_existing_secret_or_server_is_used_as_given() {
    // A Secret of the user's: no Secret of the chart's; both sides use it.
    let objects = deployed(&["--set", "events.nats.auth.existingSecret=my-nats"]);
    assert!(find(&objects, "Secret", "flint-nats-auth").is_none());
    let server = container(object(&objects, "StatefulSet", "flint-nats"));
    assert_eq!(secret_ref(server, "NATS_TOKEN").0, "my-nats");
    assert_eq!(
        secret_ref(gateway(&objects), "FLINT_NATS_TOKEN").0,
        "my-nats"
    );
    // An existing server: a token only when a Secret is named; 1Gi of streams.
    let url = ["--set", "events.nats.url=nats://nats.nats-system:4222"];
    let objects = render(&url);
    assert!(env(gateway(&objects), "FLINT_NATS_TOKEN").is_none());
    assert!(find(&objects, "Secret", "flint-nats-auth").is_none());
    assert_eq!(max_bytes(&objects), GIB);
    let mut args = url.to_vec();
    args.extend(["--set", "events.nats.auth.existingSecret=their-token"]);
    let objects = render(&args);
    assert_eq!(
        secret_ref(gateway(&objects), "FLINT_NATS_TOKEN").0,
        "their-token"
    );
    // No NATS at all: nothing of it.
    let objects = render(&[]);
    assert!(env(gateway(&objects), "FLINT_NATS_TOKEN").is_none());
    assert!(env(gateway(&objects), "FLINT_NATS_MAX_BYTES").is_none());
}

/// Sends CONNECT with `token` (if any) and a PING; the server's answer line.
fn nats_hello(port: u16, token: Option<&str>) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut info = String::new();
    reader.read_line(&mut info).unwrap();
    assert!(info.starts_with("INFO "), "{info}");
    let auth = token.map_or(String::new(), |t| format!(",\"auth_token\":\"{t}\""));
    let mut writer = stream;
    write!(
        writer,
        "CONNECT {{\"verbose\":false,\"pedantic\":false{auth}}}\r\nPING\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    reader.read_line(&mut answer).unwrap();
    answer.trim().to_owned()
}

#[test]
fn the_rendered_configuration_refuses_a_client_without_the_token() {
    if std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("nats-server is not installed (apt-get install -y nats-server)");
    }
    let objects = deployed(&[]);
    let dir = std::env::temp_dir().join(format!("flint-chart-nats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // The chart's nats.conf with this machine's paths and ports; without
    // sync_interval, which the test machine's nats-server (Debian's 2.9)
    // does not know (the chart's image is 2.10).
    let conf = nats_conf(&objects)
        .replace("store_dir: /data", &format!("store_dir: {}", dir.display()))
        .replace("port: 4222", &format!("port: {port}"))
        .replace("http_port: 8222", "http_port: -1")
        .lines()
        .filter(|l| !l.trim_start().starts_with("sync_interval"))
        .collect::<Vec<_>>()
        .join("\n");
    let path = dir.join("nats.conf");
    std::fs::write(&path, conf).unwrap();
    let token = "Tk9xTestToken";
    let mut server = std::process::Command::new("nats-server")
        .arg("--config")
        .arg(&path)
        .env("SERVER_NAME", "flint-nats-0")
        .env("NATS_TOKEN", token)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let up = (0..200).any(|_| {
        std::thread::sleep(Duration::from_millis(25));
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let answers = up.then(|| {
        [
            nats_hello(port, None),
            nats_hello(port, Some("wrong")),
            nats_hello(port, Some(token)),
        ]
    });
    let _ = server.kill();
    let output = server.wait_with_output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let [anonymous, wrong, right] = answers.unwrap_or_else(|| {
        panic!(
            "nats-server did not start with the chart's configuration: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(anonymous.contains("Authorization Violation"), "{anonymous}");
    assert!(wrong.contains("Authorization Violation"), "{wrong}");
    assert_eq!(right, "PONG");
}
