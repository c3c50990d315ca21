//! A custom domain over TLS, end to end on real sockets and checked with
//! real TLS clients (openssl, curl): the certificate a Function's Secret
//! holds is served by SNI for its domain, the default one for the hosts of
//! a Function without its own, and a changed Secret is served to the next
//! handshake.

mod gateway_support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::{Arc, Mutex};

use flint_api::Protocol;
use flint_api::backend::{FunctionAccess, FunctionKey, FunctionRoute};
use flint_api::function::{KeySource, TlsSpec};
use flint_runtime::gateway::keyring::{Keyring, KeyringError};
use flint_runtime::gateway::tls::self_signed;
use flint_runtime::gateway::{Listener, ListenerKind};
use gateway_support::*;

type Pem = (Vec<u8>, Vec<u8>);

/// TLS Secrets by name, and a default certificate.
#[derive(Default)]
struct Certs {
    secrets: Mutex<HashMap<String, Pem>>,
    default: Mutex<Option<Pem>>,
}

fn mint(hosts: &[&str]) -> Pem {
    let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
    let (cert, key) = self_signed(&hosts).unwrap();
    (cert.into_bytes(), key.into_bytes())
}

impl Keyring for Certs {
    fn values(&self, _: &FunctionKey, _: &KeySource) -> Result<Vec<Vec<u8>>, KeyringError> {
        Err(KeyringError::Unsupported("no keys".into()))
    }
    fn file(&self, _: &FunctionKey, p: &str) -> Result<Vec<u8>, KeyringError> {
        Err(KeyringError::Unsupported(p.into()))
    }
    fn tls(&self, ns: &str, name: &str) -> Result<Pem, KeyringError> {
        self.secrets
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or(KeyringError::SecretNotFound {
                namespace: ns.into(),
                name: name.into(),
            })
    }
    fn default_tls(&self, _: &[String]) -> Option<Result<Pem, KeyringError>> {
        self.default.lock().unwrap().clone().map(Ok)
    }
}

/// SHA-256 fingerprint of a PEM certificate, as openssl prints it.
fn fingerprint_of_pem(pem: &[u8]) -> String {
    let dir = std::env::temp_dir().join(format!("flint-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.pem", pem.len()));
    std::fs::write(&path, pem).unwrap();
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The fingerprint of the certificate `addr` serves for SNI `name`
/// (empty when the handshake fails), read by `openssl s_client`.
fn served(addr: SocketAddr, name: &str) -> String {
    let script = format!(
        "openssl s_client -connect {addr} -servername {name} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256 2>/dev/null"
    );
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn function(name: &str, domains: &[&str], secret: Option<&str>) -> FunctionRoute {
    FunctionRoute {
        access: FunctionAccess {
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            tls: Some(TlsSpec {
                secret_name: secret.map(str::to_owned),
                redirect: false,
            }),
            created: Some("2026-01-01T00:00:00Z".into()),
            ..FunctionAccess::default()
        },
        ..single(name, revision(&format!("{name}-00001"), 0, 10))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_domain_over_tls_gets_its_secret_s_certificate_by_sni() {
    let app = app("app", Protocol::Http1).await;
    let gw = gateway(config()).await;
    let certs = Arc::new(Certs::default());
    let api_cert = mint(&["api.example.org"]);
    let wildcard = mint(&["*.ns.localhost"]);
    certs
        .secrets
        .lock()
        .unwrap()
        .insert("api-cert".into(), api_cert.clone());
    *certs.default.lock().unwrap() = Some(wildcard.clone());
    gw.gateway.set_keyring(certs.clone());
    gw.gateway.set_routes(vec![
        function("api", &["api.example.org"], Some("api-cert")),
        function("plain", &[], None),
    ]);
    gw.gateway
        .set_endpoints(&key("api", "api-00001"), vec![ready("p", app.addr)]);

    let socket = flint_runtime::gateway::listener(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let tls_addr = socket.local_addr().unwrap();
    let tls = gw.gateway.tls_config().unwrap();
    let g = gw.gateway.clone();
    tokio::spawn(async move {
        let listeners = vec![Listener::tls(socket, ListenerKind::Public, tls)];
        g.serve_listeners(listeners, std::future::pending()).await
    });

    let (api_fp, wildcard_fp) = (
        fingerprint_of_pem(&api_cert.0),
        fingerprint_of_pem(&wildcard.0),
    );
    assert!(api_fp.contains("Fingerprint"), "{api_fp}");
    let probe =
        move |name: &'static str| tokio::task::spawn_blocking(move || served(tls_addr, name));
    assert_eq!(probe("api.example.org").await.unwrap(), api_fp);
    assert_eq!(
        probe("plain.ns.localhost").await.unwrap(),
        wildcard_fp,
        "no Secret of its own: the default"
    );

    // curl, resolving the domain to the gateway, gets the app over TLS (h2 by ALPN).
    let url = format!("https://api.example.org:{}/whoami", tls_addr.port());
    let resolve = format!("api.example.org:{}:127.0.0.1", tls_addr.port());
    let out = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args([
                "-sk",
                "--http2",
                "-w",
                " %{http_version} %{http_code}",
                "--resolve",
                &resolve,
                &url,
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(text, "app  2 200", "body, HTTP version, status: {text}");

    // The Secret is renewed: the next handshake gets the new certificate.
    let renewed = mint(&["api.example.org", "www.example.org"]);
    certs
        .secrets
        .lock()
        .unwrap()
        .insert("api-cert".into(), renewed.clone());
    gw.gateway.refresh_access();
    assert_eq!(
        probe("api.example.org").await.unwrap(),
        fingerprint_of_pem(&renewed.0)
    );
}
