use super::env::parse_dot_env;
use super::*;
use flint_runtime::local::ProbeCheck;

/// A fresh directory for one test.
fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("flint-local-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A Function named `hello` in `default` whose spec has `extra` (a flow
/// mapping's inner fields) besides image and command.
fn function(extra: &str) -> Function {
    let sep = if extra.is_empty() { "" } else { ", " };
    let text = format!(
        "apiVersion: flint.dev/v1alpha1\nkind: Function\nmetadata: {{name: hello}}\nspec: {{image: x, command: [app]{sep}{extra}}}\n"
    );
    let mut f = flint_api::parse_functions(&text)
        .unwrap_or_else(|e| panic!("{extra}: {e}"))
        .remove(0);
    f.metadata.namespace = Some("default".into());
    f
}

const OBJECTS: &str = "\
apiVersion: v1
kind: Secret
metadata: {name: creds}
data: {user: YWRh, token: czNjcjN0}
stringData: {user: bob}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {MODE: fast, LEVEL: debug}
---
apiVersion: v1
kind: Secret
metadata: {name: binary}
data: {blob: //79}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: other}
stringData: {token: elsewhere}
";

/// The environment expected (sorted by name), or the error's exact text
/// with `DIR` for the manifest's directory.
type Want = Result<&'static [(&'static str, &'static str)], &'static str>;

/// (spec fields, what they resolve to).
#[test]
fn env_resolution() {
    let dir = temp("env");
    std::fs::write(dir.join("objects.yaml"), OBJECTS).unwrap();
    let mut objects = Objects::default();
    objects.read(&dir.join("objects.yaml"), OBJECTS);
    let manifest = dir.join("function.yaml");
    let cases: &[(&str, Want)] = &[
        (
            "env: [{name: A, value: b}, {name: EMPTY}]",
            Ok(&[("A", "b"), ("EMPTY", "")]),
        ),
        (
            "env: [{name: T, valueFrom: {secretKeyRef: {name: creds, key: token}}}]",
            Ok(&[("T", "s3cr3t")]),
        ),
        // stringData wins over data, as on the API server.
        (
            "env: [{name: U, valueFrom: {secretKeyRef: {name: creds, key: user}}}]",
            Ok(&[("U", "bob")]),
        ),
        (
            "env: [{name: M, valueFrom: {configMapKeyRef: {name: settings, key: MODE}}}]",
            Ok(&[("M", "fast")]),
        ),
        (
            "envFrom: [{configMapRef: {name: settings}, prefix: CFG_}]",
            Ok(&[("CFG_LEVEL", "debug"), ("CFG_MODE", "fast")]),
        ),
        // env wins over envFrom.
        (
            "envFrom: [{configMapRef: {name: settings}}], env: [{name: MODE, value: slow}]",
            Ok(&[("LEVEL", "debug"), ("MODE", "slow")]),
        ),
        (
            "envFrom: [{secretRef: {name: missing, optional: true}}], env: [{name: X, valueFrom: {secretKeyRef: {name: creds, key: nope, optional: true}}}]",
            Ok(&[]),
        ),
        (
            "env: [{name: NS, valueFrom: {fieldRef: {fieldPath: metadata.namespace}}}, {name: IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]",
            Ok(&[("IP", "127.0.0.1"), ("NS", "default")]),
        ),
        (
            "envFrom: [{secretRef: {name: missing}}]",
            Err(
                "function default/hello: spec.envFrom[0].secretRef: Secret \"missing\" not found: no YAML file in DIR defines a Secret named \"missing\" in namespace default; add its manifest there, or mark the reference `optional: true`",
            ),
        ),
        (
            "env: [{name: A, value: b}, {name: C, valueFrom: {configMapKeyRef: {name: nothing, key: k}}}]",
            Err(
                "function default/hello: spec.env[1].valueFrom.configMapKeyRef: ConfigMap \"nothing\" not found: no YAML file in DIR defines a ConfigMap named \"nothing\" in namespace default; add its manifest there, or mark the reference `optional: true`",
            ),
        ),
        (
            "env: [{name: T, valueFrom: {secretKeyRef: {name: creds, key: password}}}]",
            Err(
                "function default/hello: spec.env[0].valueFrom.secretKeyRef: Secret \"creds\" has no key \"password\"; add it, or mark the reference `optional: true`",
            ),
        ),
        (
            "env: [{name: B, valueFrom: {secretKeyRef: {name: binary, key: blob}}}]",
            Err(
                "function default/hello: spec.env[0].valueFrom.secretKeyRef: Secret \"binary\" in DIR/objects.yaml: data.blob is not UTF-8 text, so it cannot be an environment variable",
            ),
        ),
        (
            "env: [{name: CPU, valueFrom: {resourceFieldRef: {resource: limits.cpu}}}]",
            Err(
                "function default/hello: spec.env[0].valueFrom.resourceFieldRef: flint dev does not apply container resources, so it has no value for this; set the variable with `value` or in .env",
            ),
        ),
    ];
    for (extra, want) in cases {
        let got = resolve(&function(extra), &manifest, &objects);
        match (want, got) {
            (Ok(want), Ok(run)) => {
                let got: Vec<(&str, &str)> = run
                    .env
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                assert_eq!(got, *want, "{extra}");
            }
            (Err(want), Err(e)) => assert_eq!(
                e.to_string(),
                want.replace("DIR", &dir.display().to_string()),
                "{extra}"
            ),
            (want, got) => panic!("{extra}: wanted {want:?}, got {got:?}"),
        }
    }
    // Objects of another namespace or directory are not found.
    let elsewhere = temp("env-elsewhere").join("function.yaml");
    let err = resolve(
        &function("envFrom: [{secretRef: {name: creds}}]"),
        &elsewhere,
        &objects,
    )
    .unwrap_err();
    assert!(matches!(err, LocalError::MissingObject { .. }), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dot_env_is_the_lowest_source() {
    let dir = temp("dotenv");
    std::fs::write(dir.join(".env"), "A=from-file\nB=from-file\n").unwrap();
    let run = resolve(
        &function("env: [{name: B, value: from-manifest}]"),
        &dir.join("function.yaml"),
        &Objects::default(),
    )
    .unwrap();
    assert_eq!(
        run.env,
        [
            ("A".to_owned(), "from-file".to_owned()),
            ("B".to_owned(), "from-manifest".to_owned())
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dot_env_parsing() {
    let file = Path::new("/fns/hello/.env");
    let ok = "# settings\n\nA=1\nexport B = two words \nC=\"quoted # not a comment\"\nD='single'\nE=x # a comment\nF=\nG=a=b\n";
    let parsed = parse_dot_env(file, ok).unwrap();
    let pairs: Vec<(&str, &str)> = parsed
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("A", "1"),
            ("B", "two words"),
            ("C", "quoted # not a comment"),
            ("D", "single"),
            ("E", "x"),
            ("F", ""),
            ("G", "a=b"),
        ]
    );
    let bad = [
        (
            "A=1\nB\n",
            "/fns/hello/.env:2: expected KEY=VALUE, found \"B\"",
        ),
        (
            "# x\n\n=1\n",
            "/fns/hello/.env:3: \"\" is not a variable name (letters, digits and _, not starting with a digit)",
        ),
        (
            "1A=x\n",
            "/fns/hello/.env:1: \"1A\" is not a variable name (letters, digits and _, not starting with a digit)",
        ),
        (
            "MY-VAR=x\n",
            "/fns/hello/.env:1: \"MY-VAR\" is not a variable name (letters, digits and _, not starting with a digit)",
        ),
        (
            "A=1\nB=2\nC=\"open\n",
            "/fns/hello/.env:3: the value of C opens a \" quote that does not close at the end of the line",
        ),
    ];
    for (text, want) in bad {
        assert_eq!(
            parse_dot_env(file, text).unwrap_err().to_string(),
            want,
            "{text}"
        );
    }
}

#[test]
fn working_dir_is_taken_under_the_manifest_directory() {
    let dir = temp("workdir");
    std::fs::create_dir_all(dir.join("srv/app")).unwrap();
    std::fs::write(dir.join("file"), "").unwrap();
    std::os::unix::fs::symlink("/tmp", dir.join("out")).unwrap();
    assert_eq!(working_dir(None, &dir), Ok(dir.clone()));
    assert_eq!(working_dir(Some("/"), &dir), Ok(dir.clone()));
    assert_eq!(working_dir(Some("/srv/app"), &dir), Ok(dir.join("srv/app")));
    assert_eq!(
        working_dir(Some("/srv/app/../app/./"), &dir),
        Ok(dir.join("srv/app"))
    );
    let refused = [
        ("/../etc", "leaves the manifest's directory"),
        ("/srv/../../x", "leaves the manifest's directory"),
        ("/nope", "which does not exist"),
        ("/file", "which is not a directory"),
        ("/out", "a link out of the manifest's directory"),
    ];
    for (path, words) in refused {
        let err = working_dir(Some(path), &dir).unwrap_err();
        assert!(err.contains(words), "{path}: {err}");
    }
    // Refused with the field named.
    let err = resolve(
        &function("workingDir: /nope"),
        &dir.join("function.yaml"),
        &Objects::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("function default/hello: spec.workingDir: \"/nope\" is "),
        "{err}"
    );
    let run = resolve(
        &function("workingDir: /srv/app"),
        &dir.join("function.yaml"),
        &Objects::default(),
    )
    .unwrap();
    assert_eq!(run.dir, dir.join("srv/app"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn probes_run_against_the_replica_port_or_are_refused() {
    let manifest = Path::new("/fns/hello/function.yaml");
    let run = resolve(
        &function(
            "port: 8081, readinessProbe: {httpGet: {path: ready, port: 8081, httpHeaders: [{name: X-A, value: b}]}, periodSeconds: 2, failureThreshold: 1}, livenessProbe: {tcpSocket: {port: http}}, startupProbe: {httpGet: {path: /up, port: http}, failureThreshold: 30}",
        ),
        manifest,
        &Objects::default(),
    )
    .unwrap();
    let readiness = run.probes.readiness.unwrap();
    assert_eq!(
        readiness.check,
        ProbeCheck::Http {
            path: "/ready".into(),
            headers: vec![("X-A".into(), "b".into())]
        }
    );
    assert_eq!(
        (
            readiness.period,
            readiness.timeout,
            readiness.failure_threshold,
            readiness.success_threshold
        ),
        (Duration::from_secs(2), Duration::from_secs(1), 1, 1)
    );
    assert_eq!(run.probes.liveness.unwrap().check, ProbeCheck::Tcp);
    let startup = run.probes.startup.unwrap();
    assert_eq!(
        (startup.failure_threshold, startup.period),
        (30, Duration::from_secs(10))
    );
    assert!(run.notes.is_empty(), "{:?}", run.notes);

    // exec probes get a note and are not run.
    let run = resolve(
        &function(
            "livenessProbe: {exec: {command: [true]}}, readinessProbe: {exec: {command: [true]}}",
        ),
        manifest,
        &Objects::default(),
    )
    .unwrap();
    assert_eq!(run.probes, Probes::default());
    assert_eq!(
        run.notes,
        [
            "function default/hello: spec.readinessProbe: exec probes are not run by flint dev; a replica is ready once it accepts connections on its port",
            "function default/hello: spec.livenessProbe: exec probes are not run by flint dev",
        ]
    );

    let refused = [
        (
            "readinessProbe: {httpGet: {path: /, port: 9000}}",
            "function default/hello: spec.readinessProbe.httpGet.port: 9000 is not the function's port (8080, named http); flint dev gives each replica its own port ($PORT) and can probe only that one",
        ),
        (
            "livenessProbe: {tcpSocket: {port: admin}}",
            "function default/hello: spec.livenessProbe.tcpSocket.port: \"admin\" is not the function's port (8080, named http); flint dev gives each replica its own port ($PORT) and can probe only that one",
        ),
        (
            "startupProbe: {httpGet: {path: /, port: 8080, scheme: HTTPS}}",
            "function default/hello: spec.startupProbe.httpGet.scheme: flint dev probes over plain HTTP only",
        ),
        (
            "readinessProbe: {httpGet: {path: /, port: 8080, host: example.com}}",
            "function default/hello: spec.readinessProbe.httpGet.host: \"example.com\": flint dev probes only the local replica",
        ),
    ];
    for (extra, want) in refused {
        let err = resolve(&function(extra), manifest, &Objects::default()).unwrap_err();
        assert_eq!(err.to_string(), want, "{extra}");
    }
}

#[test]
fn placement_and_other_containers_get_one_note() {
    let manifest = Path::new("/fns/hello/function.yaml");
    let plain = resolve(&function(""), manifest, &Objects::default()).unwrap();
    assert!(plain.notes.is_empty());
    let placed = function(
        "nodeSelector: {zone: a}, tolerations: [{key: k, operator: Exists}], affinity: {nodeAffinity: {}}, topologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway}], runtimeClassName: gvisor, priorityClassName: high, sidecars: [{name: proxy, image: p:1}], initContainers: [{name: init, image: i:1}]",
    );
    let run = resolve(&placed, manifest, &Objects::default()).unwrap();
    assert_eq!(
        run.notes,
        [
            "function default/hello: spec.initContainers, spec.sidecars, spec.nodeSelector, spec.affinity, spec.tolerations, spec.topologySpreadConstraints, spec.runtimeClassName, spec.priorityClassName not applied by flint dev (it runs only the function's own command, on this machine)"
        ]
    );
}

#[test]
fn identity_follows_the_environment() {
    let a = LocalRun {
        env: vec![("A".into(), "1".into())],
        ..LocalRun::default()
    };
    let b = LocalRun {
        env: vec![("A".into(), "2".into())],
        ..LocalRun::default()
    };
    assert_ne!(a.identity(), b.identity());
    assert_eq!(a.identity(), a.clone().identity());
}
