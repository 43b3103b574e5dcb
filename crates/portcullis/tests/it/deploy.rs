//! The deploy kit (`deploy/`): the Dockerfile, compose file and Kubernetes manifests checked
//! by parsing them (there is no Docker daemon or cluster here) and by `kubernetes-validate`
//! (PyPI, into `target/k8s-venv`) against a pinned Kubernetes version; the example config
//! through `portcullis check`; `portcullis health`; and Debian's real nginx, with the
//! shipped snippet, in front of the real binary: progress streams through it before the
//! result, and `X-Forwarded-For` counts for the per-IP limit only from a trusted proxy.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use portcullis_test::HttpServer;
use portcullis_test::clients::{describe, run, run_ok, venv};
use reqwest::StatusCode;
use serde_json::{Value, json};
use serde_norway::Value as Yaml;

use crate::bin;

/// The Kubernetes version the manifests must validate against (strict: no unknown fields).
const KUBERNETES_VERSION: &str = "1.34.0";
const API_KEY: &str = "pcs_deploy-test-key";
const METRICS_TOKEN: &str = "a deploy-test metrics token";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy")
}

fn read(relative: &str) -> String {
    let path = deploy_dir().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn yaml_documents(relative: &str) -> Vec<Yaml> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(&read(relative))
        .map(|doc| Yaml::deserialize(doc).unwrap_or_else(|e| panic!("{relative}: {e}")))
        .collect()
}

/// `value` at a `/`-separated path of mapping keys and sequence indexes.
fn at<'a>(value: &'a Yaml, path: &str) -> &'a Yaml {
    path.split('/').fold(value, |v, key| {
        let next = match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(key),
        };
        next.unwrap_or_else(|| panic!("no `{key}` on the way to `{path}` in {v:?}"))
    })
}

fn str_at<'a>(value: &'a Yaml, path: &str) -> &'a str {
    at(value, path)
        .as_str()
        .unwrap_or_else(|| panic!("`{path}` is not a string"))
}

/// The environment `deploy/portcullis.toml` needs (the Secret's values in production).
fn example_env(files_root: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "PORTCULLIS_API_KEY_SHA256",
            portcullis_server::auth::hash_key(API_KEY),
        ),
        (
            "PORTCULLIS_FINGERPRINT_KEY",
            "deploy-test-fingerprint-key".to_owned(),
        ),
        (
            "PORTCULLIS_STATE_KEY",
            "deploy-test-state-key-0123456789abcdef".to_owned(),
        ),
        ("PORTCULLIS_FILES_ROOT", files_root.display().to_string()),
    ]
}

/// The config model's reading of `text` (a copy of `deploy/portcullis.toml`) with the
/// example environment.
fn parse_example(text: &str) -> portcullis_config::Config {
    let root = tempfile::tempdir().expect("tempdir");
    let env = example_env(root.path());
    portcullis_config::parse(text, &deploy_dir().join("portcullis.toml"), |name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap_or_else(|e| panic!("the example config does not parse: {e}"))
}

/// Dockerfile instructions: (KEYWORD, arguments), continuation lines joined, comments and
/// parser directives dropped.
fn dockerfile() -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in read("Dockerfile").lines() {
        let line = line.trim();
        if pending.is_empty() && (line.is_empty() || line.starts_with('#')) {
            continue;
        }
        if let Some(part) = line.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        let (keyword, args) = pending
            .split_once(char::is_whitespace)
            .unwrap_or((&pending, ""));
        out.push((keyword.to_ascii_uppercase(), args.trim().to_owned()));
        pending.clear();
    }
    out
}

#[test]
fn dockerfile_is_multi_stage_non_root_with_a_health_check_and_no_secrets() {
    let instructions = dockerfile();
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (k, _))| k == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(
        stages.len() >= 2,
        "a build stage and a runtime stage: {instructions:?}"
    );
    let runtime = &instructions[*stages.last().expect("stages")..];
    let build = &instructions[..*stages.last().expect("stages")];

    let cargo = build
        .iter()
        .find(|(k, a)| k == "RUN" && a.contains("cargo build"))
        .expect("the build stage runs cargo build");
    let words: Vec<&str> = cargo.1.split_whitespace().collect();
    // The shipped binary is the `dist` profile's (fat LTO, one codegen unit).
    assert!(
        words.contains(&"--locked") && words.windows(2).any(|w| w == ["--profile", "dist"]),
        "cargo build must use --locked --profile dist: {}",
        cargo.1
    );

    let copies_binary = runtime.iter().any(|(k, a)| {
        k == "COPY" && a.starts_with("--from=") && a.ends_with("/usr/local/bin/portcullis")
    });
    assert!(
        copies_binary,
        "the runtime stage copies the binary: {runtime:?}"
    );

    let user = runtime
        .iter()
        .rev()
        .find(|(k, _)| k == "USER")
        .map(|(_, a)| a.as_str())
        .expect("the runtime stage sets USER");
    let name = user.split(':').next().unwrap_or_default();
    assert!(
        !name.is_empty() && name != "root" && name != "0",
        "USER must not be root: {user}"
    );

    let health = runtime
        .iter()
        .find(|(k, _)| k == "HEALTHCHECK")
        .map(|(_, a)| a.as_str())
        .expect("the runtime stage has a HEALTHCHECK");
    let command = health.split_once("CMD").expect("HEALTHCHECK … CMD …").1;
    assert!(
        command.contains("portcullis")
            && command.contains("\"health\"")
            && command.contains("/healthz"),
        "HEALTHCHECK must run `portcullis health` against /healthz: {health}"
    );

    let entry = runtime
        .iter()
        .find(|(k, _)| k == "ENV")
        .expect("ENV")
        .1
        .clone();
    assert!(
        entry.contains("PORTCULLIS_CONFIG=/etc/portcullis/portcullis.toml"),
        "the config is mounted at /etc/portcullis: {entry}"
    );
    for (keyword, args) in &instructions {
        let upper = args.to_ascii_uppercase();
        if keyword == "ENV" || keyword == "ARG" || keyword == "LABEL" {
            for word in ["KEY", "SECRET", "PASSWORD", "TOKEN", "SHA256"] {
                assert!(
                    !upper.contains(word),
                    "{keyword} {args}: secrets come from the environment at run time"
                );
            }
        }
        if keyword == "COPY" || keyword == "ADD" {
            assert!(
                !args.contains(".toml") && !args.contains(".env") && !args.contains(".pem"),
                "{keyword} {args}: no config or secret file is baked into the image"
            );
        }
    }
}

/// `health --config` asks the config's own `http.listen`, not a fixed 8080.
#[tokio::test(flavor = "multi_thread")]
async fn health_reads_the_listen_address_from_the_config() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = crate::free_port();
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        format!("[server]\nname = \"health\"\n[http]\nlisten = \"127.0.0.1:{port}\"\n"),
    )
    .expect("config");
    let health = || async {
        let mut health = tokio::process::Command::new(bin());
        health
            .args(["health", "--config"])
            .arg(&config)
            .env_remove("PORTCULLIS_CONFIG");
        run(&mut health, "portcullis health", Duration::from_secs(30)).await
    };
    let down = health().await;
    assert_eq!(down.status.code(), Some(1), "{}", describe(&down));
    assert!(
        String::from_utf8_lossy(&down.stderr).contains(&format!("127.0.0.1:{port}")),
        "{}",
        describe(&down)
    );
    let server = HttpServer::spawn(bin(), &config).await.expect("spawn");
    let up = health().await;
    assert_eq!(up.status.code(), Some(0), "{}", describe(&up));
    assert!(up.stdout.is_empty());
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn example_config_passes_check() {
    let root = tempfile::tempdir().expect("tempdir");
    let mut check = tokio::process::Command::new(bin());
    check
        .args(["check", "--config"])
        .arg(deploy_dir().join("portcullis.toml"))
        .env_remove("PORTCULLIS_CONFIG")
        .envs(example_env(root.path()));
    let output = run_ok(
        &mut check,
        "portcullis check deploy/portcullis.toml",
        Duration::from_secs(60),
    )
    .await;
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(report.starts_with("config ok: portcullis"), "{report}");
    assert!(report.contains("http: 0.0.0.0:8080/mcp"), "{report}");
    assert!(report.contains("auth: 1 API key(s)"), "{report}");
    assert!(
        report.contains("read_file        read-only; needs scope(s) files:read"),
        "{report}"
    );

    // Without the Secret's values it is refused, naming the variable.
    let mut bare = tokio::process::Command::new(bin());
    bare.args(["check", "--config"])
        .arg(deploy_dir().join("portcullis.toml"))
        .env_remove("PORTCULLIS_API_KEY_SHA256")
        .env("PORTCULLIS_FINGERPRINT_KEY", "deploy-test-fingerprint-key");
    let refused = run(
        &mut bare,
        "portcullis check without the secrets",
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(refused.status.code(), Some(64), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("PORTCULLIS_API_KEY_SHA256"),
        "{}",
        describe(&refused)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn health_subcommand_exits_zero_only_on_200() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("portcullis.toml");
    std::fs::write(
        &config,
        "[server]\nname = \"health\"\n[http]\nlisten = \"127.0.0.1:0\"\n",
    )
    .expect("config");
    let server = HttpServer::spawn(bin(), &config).await.expect("spawn");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let closed_url = format!("http://{}/healthz", closed.local_addr().expect("addr"));
    drop(closed);
    for (url, healthy) in [
        (server.at("/healthz"), true),
        (server.at("/no-such-page"), false),
        (closed_url, false),
        ("https://127.0.0.1/healthz".to_owned(), false),
    ] {
        let mut health = tokio::process::Command::new(bin());
        health.args(["health", "--url", &url]);
        let output = run(&mut health, "portcullis health", Duration::from_secs(30)).await;
        assert_eq!(
            output.status.success(),
            healthy,
            "{url}: {}",
            describe(&output)
        );
        assert_eq!(
            output.status.code(),
            Some(if healthy { 0 } else { 1 }),
            "{url}"
        );
        assert!(
            output.stdout.is_empty(),
            "nothing on stdout: {}",
            describe(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn k8s_manifests_validate_strictly_and_keep_their_invariants() {
    let files: Vec<PathBuf> = std::fs::read_dir(deploy_dir().join("k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert!(files.len() >= 4, "{files:?}");
    let venv = venv("k8s-venv", "tests/clients/requirements-k8s.txt").await;
    let mut validate = tokio::process::Command::new(venv.join("bin/kubernetes-validate"));
    validate
        .args(["--strict", "--kubernetes-version", KUBERNETES_VERSION])
        .args(&files);
    let output = run_ok(
        &mut validate,
        "run kubernetes-validate",
        Duration::from_secs(120),
    )
    .await;
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for kind in [
        "deployment/portcullis",
        "service/portcullis",
        "poddisruptionbudget/portcullis",
        "configmap/portcullis",
        "horizontalpodautoscaler/portcullis",
        "deployment/redis",
        "service/redis",
        "networkpolicy/redis",
    ] {
        assert!(
            report.contains(&format!("passed for resource {kind}")),
            "{kind}: {report}"
        );
    }

    let mut by_kind: BTreeMap<String, Yaml> = BTreeMap::new();
    for file in &files {
        let name = file
            .strip_prefix(deploy_dir())
            .expect("under deploy/")
            .display()
            .to_string();
        // Portcullis's own objects (redis.yaml has a Deployment and a Service too).
        for doc in yaml_documents(&name) {
            if str_at(&doc, "metadata/name") == "portcullis" {
                by_kind.insert(str_at(&doc, "kind").to_owned(), doc);
            }
        }
    }
    let deployment = &by_kind["Deployment"];
    let pod = at(deployment, "spec/template/spec");
    let container = at(pod, "containers/0");

    // The config in the ConfigMap is deploy/portcullis.toml, and its shutdown grace fits in
    // the pod's termination grace period after the preStop pause.
    let configmap = &by_kind["ConfigMap"];
    let config_text = str_at(configmap, "data/portcullis.toml");
    assert_eq!(
        config_text,
        read("portcullis.toml"),
        "the ConfigMap must carry deploy/portcullis.toml verbatim"
    );
    let config = parse_example(config_text);
    let grace = at(pod, "terminationGracePeriodSeconds")
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    let pause = at(container, "lifecycle/preStop/sleep/seconds")
        .as_u64()
        .unwrap_or(0);
    assert!(
        grace > pause + config.http.shutdown_grace_secs,
        "terminationGracePeriodSeconds ({grace}) must exceed the preStop pause ({pause}) plus http.shutdown_grace_secs ({})",
        config.http.shutdown_grace_secs
    );

    // Probes: liveness on /healthz, readiness on /readyz, on the port Portcullis listens on.
    assert_eq!(str_at(container, "livenessProbe/httpGet/path"), "/healthz");
    assert_eq!(str_at(container, "readinessProbe/httpGet/path"), "/readyz");
    let port = at(container, "ports/0/containerPort")
        .as_u64()
        .expect("containerPort");
    assert_eq!(
        port,
        u64::from(config.http.listen.port()),
        "containerPort is the config's listen port"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            str_at(container, &format!("{probe}/httpGet/port")),
            str_at(container, "ports/0/name")
        );
    }

    // Locked down.
    let security = at(container, "securityContext");
    assert_eq!(at(security, "runAsNonRoot").as_bool(), Some(true));
    assert_eq!(
        at(security, "allowPrivilegeEscalation").as_bool(),
        Some(false)
    );
    assert_eq!(at(security, "readOnlyRootFilesystem").as_bool(), Some(true));
    assert_eq!(
        at(security, "capabilities/drop")
            .as_sequence()
            .map(Vec::as_slice),
        Some(&[Yaml::from("ALL")][..])
    );
    assert_eq!(str_at(security, "seccompProfile/type"), "RuntimeDefault");
    assert_eq!(
        at(pod, "securityContext/runAsNonRoot").as_bool(),
        Some(true)
    );
    for (kind, what) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "cpu"),
        ("limits", "memory"),
    ] {
        at(container, &format!("resources/{kind}/{what}"));
    }

    // Writable only where Portcullis writes (emptyDirs), the config from the ConfigMap at
    // the path PORTCULLIS_CONFIG names, and every secret from the Secret, none inline.
    let volumes = at(pod, "volumes").as_sequence().expect("volumes");
    let volume = |name: &str| {
        volumes
            .iter()
            .find(|v| str_at(v, "name") == name)
            .unwrap_or_else(|| panic!("no volume `{name}`"))
    };
    let mut config_path = None;
    for mount in at(container, "volumeMounts")
        .as_sequence()
        .expect("volumeMounts")
    {
        let path = str_at(mount, "mountPath");
        let read_only = mount.get("readOnly").and_then(Yaml::as_bool) == Some(true);
        let source = volume(str_at(mount, "name"));
        match path {
            "/var/lib/portcullis" | "/tmp" => {
                assert!(
                    !read_only && source.get("emptyDir").is_some(),
                    "{path} is a writable emptyDir"
                );
            }
            _ => assert!(read_only, "{path} must be mounted read-only"),
        }
        if source.get("configMap").is_some() {
            assert_eq!(
                str_at(source, "configMap/name"),
                str_at(configmap, "metadata/name")
            );
            config_path = Some(format!("{path}/portcullis.toml"));
        }
    }
    let env = at(container, "env").as_sequence().expect("env");
    let var = |name: &str| env.iter().find(|e| str_at(e, "name") == name);
    assert_eq!(
        var("PORTCULLIS_CONFIG").map(|e| str_at(e, "value").to_owned()),
        config_path,
        "PORTCULLIS_CONFIG names the mounted ConfigMap"
    );
    let secrets: Vec<&str> = config_text
        .match_indices("${")
        .map(|(i, _)| &config_text[i + 2..])
        .map(|rest| &rest[..rest.find([':', '}']).expect("closed")])
        .filter(|name| name.contains("KEY") || name.contains("SHA256") || name.contains("SECRET"))
        .collect();
    assert!(secrets.len() >= 2, "{secrets:?}");
    for name in secrets {
        let entry = var(name).unwrap_or_else(|| panic!("the Deployment does not set {name}"));
        assert!(entry.get("value").is_none(), "{name} must not be inline");
        str_at(entry, "valueFrom/secretKeyRef/name");
        str_at(entry, "valueFrom/secretKeyRef/key");
    }

    // The Service and the PodDisruptionBudget select these pods.
    let labels = at(deployment, "spec/template/metadata/labels");
    assert_eq!(at(deployment, "spec/selector/matchLabels"), labels);
    assert_eq!(
        at(&by_kind["PodDisruptionBudget"], "spec/selector/matchLabels"),
        labels
    );
    assert_eq!(at(&by_kind["Service"], "spec/selector"), labels);
    assert!(
        at(&by_kind["PodDisruptionBudget"], "spec/minAvailable")
            .as_u64()
            .is_some_and(|n| n >= 1)
    );
    let replicas = at(deployment, "spec/replicas").as_u64().expect("replicas");
    assert!(
        replicas >= 2,
        "one replica cannot survive a disruption budget of 1"
    );
    // The autoscaler scales this Deployment, never below what the budget needs; the
    // replicas share Redis, which the config names.
    let hpa = &by_kind["HorizontalPodAutoscaler"];
    assert_eq!(str_at(hpa, "spec/scaleTargetRef/name"), "portcullis");
    assert_eq!(str_at(hpa, "spec/scaleTargetRef/kind"), "Deployment");
    assert!(at(hpa, "spec/minReplicas").as_u64().is_some_and(|n| n >= 2));
    let cluster = config
        .cluster
        .as_ref()
        .expect("the example config has [cluster]");
    assert!(
        cluster
            .redis_url
            .as_ref()
            .is_some_and(|u| u.expose().starts_with("redis://redis:6379")),
        "the config's Redis is the redis Service"
    );
    // Redis takes a password (the URL with it comes from the Secret) and only these pods.
    let redis_url = var("PORTCULLIS_REDIS_URL").expect("PORTCULLIS_REDIS_URL");
    assert!(
        redis_url.get("value").is_none(),
        "the Redis URL carries its password: a Secret"
    );
    str_at(redis_url, "valueFrom/secretKeyRef/key");
    let redis_docs = yaml_documents("k8s/redis.yaml");
    let redis = redis_docs
        .iter()
        .find(|d| str_at(d, "kind") == "Deployment")
        .expect("the redis Deployment");
    let args = at(redis, "spec/template/spec/containers/0/args/0")
        .as_str()
        .unwrap_or_default();
    assert!(
        args.contains("--requirepass") && args.contains("noeviction"),
        "{args}"
    );
    let policy = redis_docs
        .iter()
        .find(|d| str_at(d, "kind") == "NetworkPolicy")
        .expect("a NetworkPolicy for redis");
    assert_eq!(
        at(policy, "spec/ingress/0/from/0/podSelector/matchLabels"),
        labels
    );
}

#[test]
fn compose_runs_portcullis_read_only_with_postgres_and_a_collector() {
    let compose = yaml_documents("compose.yaml").remove(0);
    let services = at(&compose, "services");
    for name in ["portcullis", "postgres", "otel-collector"] {
        at(services, name);
    }
    let portcullis = at(services, "portcullis");
    assert_eq!(at(portcullis, "read_only").as_bool(), Some(true));
    let user = str_at(portcullis, "user");
    assert!(
        !user.starts_with("0") && !user.starts_with("root"),
        "{user}"
    );
    assert_eq!(str_at(portcullis, "cap_drop/0"), "ALL");
    assert!(
        at(portcullis, "tmpfs")
            .as_sequence()
            .expect("tmpfs")
            .iter()
            .any(|t| t.as_str().is_some_and(|t| t.starts_with("/tmp")))
    );
    let volumes: Vec<&str> = at(portcullis, "volumes")
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let config_path = str_at(portcullis, "environment/PORTCULLIS_CONFIG");
    assert!(
        volumes.contains(&format!("./portcullis.toml:{config_path}:ro").as_str()),
        "{volumes:?}"
    );
    assert!(
        volumes.iter().any(|v| v.ends_with(":/var/lib/portcullis")),
        "a volume for what Portcullis writes: {volumes:?}"
    );
    // Secrets come from the operator's environment, required, never a value in the file.
    for name in [
        "PORTCULLIS_API_KEY_SHA256",
        "PORTCULLIS_FINGERPRINT_KEY",
        "PORTCULLIS_STATE_KEY",
    ] {
        let value = str_at(portcullis, &format!("environment/{name}"));
        assert!(
            value.starts_with(&format!("${{{name}:?")),
            "{name}: {value}"
        );
    }
    let config = parse_example(&read("portcullis.toml"));
    let stop = str_at(portcullis, "stop_grace_period");
    let stop: u64 = stop
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .expect("stop_grace_period in seconds");
    assert!(
        stop > config.http.shutdown_grace_secs,
        "stop_grace_period {stop}s"
    );

    // The collector gets its config file, which receives OTLP/HTTP on 4318.
    let collector = at(services, "otel-collector");
    let mounts: Vec<&str> = at(collector, "volumes")
        .as_sequence()
        .expect("volumes")
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("./otel-collector.yaml:")),
        "{mounts:?}"
    );
    let otel = yaml_documents("otel-collector.yaml").remove(0);
    assert!(str_at(&otel, "receivers/otlp/protocols/http/endpoint").ends_with(":4318"));
    let traces = at(&otel, "service/pipelines/traces/receivers")
        .as_sequence()
        .expect("receivers");
    assert!(traces.contains(&Yaml::from("otlp")));
    // The operations example names the collector and the audit sink the compose file runs.
    let operations = read("portcullis.operations.toml.example");
    assert!(operations.contains("endpoint = \"http://otel-collector:4318\""));
    assert!(operations.contains("url = \"${PORTCULLIS_AUDIT_DATABASE_URL}\""));
    assert!(
        str_at(portcullis, "environment/PORTCULLIS_AUDIT_DATABASE_URL").contains("@postgres:5432/")
    );
}

#[test]
fn caddy_snippet_streams_and_proxies_http1() {
    let caddy = read("caddy/Caddyfile");
    let lines: Vec<&str> = caddy
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    for needed in ["flush_interval -1", "versions 1.1", "read_timeout 1h"] {
        assert!(lines.contains(&needed), "Caddyfile needs `{needed}`");
    }
    assert!(
        !lines.iter().any(|l| l.starts_with("encode")),
        "no compression in front of event streams"
    );
    // Only the MCP endpoint, its metadata and /healthz are proxied; the rest is 404.
    let published: Vec<&str> = lines
        .iter()
        .find_map(|l| l.strip_prefix("@published path "))
        .expect("a `@published path …` matcher")
        .split_whitespace()
        .collect();
    assert_eq!(
        published,
        [
            "/mcp",
            "/healthz",
            "/.well-known/oauth-protected-resource",
            "/.well-known/oauth-protected-resource/*"
        ]
    );
    let proxy = lines
        .iter()
        .position(|l| l.starts_with("reverse_proxy"))
        .expect("reverse_proxy");
    assert_eq!(lines[proxy - 1], "handle @published {", "{caddy}");
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.starts_with("reverse_proxy"))
            .count(),
        1
    );
    let fallback = lines
        .iter()
        .position(|l| *l == "handle {")
        .expect("a catch-all `handle`");
    assert_eq!(lines[fallback + 1], "respond 404");
}

/// Debian's nginx with `deploy/nginx/portcullis.conf` in front of `upstream`, on a free
/// loopback port, everything it writes in a temporary directory.
struct Nginx {
    child: tokio::process::Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(upstream: SocketAddr) -> Self {
        let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("nginx is not installed: `apt-get install -y nginx` (.ci/run does)");
        let dir = tempfile::tempdir().expect("tempdir");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let replace_once = |text: String, from: &str, to: &str| {
            assert_eq!(
                text.matches(from).count(),
                1,
                "the snippet has `{from}` once"
            );
            text.replace(from, to)
        };
        let snippet = replace_once(
            read("nginx/portcullis.conf"),
            "server 127.0.0.1:8080;",
            &format!("server {upstream};"),
        );
        let snippet = replace_once(snippet, "listen 80;", &format!("listen {addr};"));
        let d = dir.path().display();
        std::fs::write(dir.path().join("portcullis.conf"), snippet).expect("snippet");
        let conf = format!(
            "daemon off;\nmaster_process on;\nworker_processes 1;\nuser root;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n  \
             fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  \
             include {d}/portcullis.conf;\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("nginx.conf");
        let child = tokio::process::Command::new(nginx)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(dir.path().join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start nginx");
        let mut nginx = Self { child, addr, dir };
        let started = Instant::now();
        // Ready when it accepts connections; an exit means the config was refused.
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Ok(Some(status)) = nginx.child.try_wait() {
                panic!("nginx exited ({status}):\n{}", nginx.error_log());
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "nginx did not listen:\n{}",
                nginx.error_log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        nginx
    }

    fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // The master's workers stop with it on SIGTERM (kill_on_drop sends SIGKILL, which
        // would orphan them).
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
    }
}

/// Portcullis behind API keys, trusting proxies on 127.0.0.1 only, with a per-IP budget of
/// three failed attempts, `/metrics` behind its token, and a `[[commands]]` tool that runs
/// for 2.5 s.
async fn portcullis_for_proxy(dir: &Path) -> HttpServer {
    std::fs::create_dir_all(dir.join("root")).expect("root");
    let config = dir.join("portcullis.toml");
    std::fs::write(
        &config,
        format!(
            r#"[server]
name = "behind-nginx"
[http]
listen = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]
[logging]
format = "json"
[[auth.api_keys]]
name = "agent"
sha256 = "{}"
[limits]
per_ip_unauthenticated = {{ per_minute = 1, burst = 3 }}
[metrics]
bearer_token = "{METRICS_TOKEN}"
[[files]]
name = "root"
path = "root"
[[commands]]
name = "slow"
description = "takes 2.5 seconds"
root = "root"
argv = ["sleep", "2.5"]
search_path = ["/usr/bin", "/bin"]
timeout_secs = 20
"#,
            portcullis_server::auth::hash_key(API_KEY)
        ),
    )
    .expect("config");
    HttpServer::spawn(bin(), &config)
        .await
        .expect("spawn portcullis")
}

#[tokio::test(flavor = "multi_thread")]
async fn progress_streams_through_nginx_before_the_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = portcullis_for_proxy(dir.path()).await;
    let nginx = Nginx::start(server.addr).await;
    let body = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": { "name": "slow", "arguments": {}, "_meta": {
            "progressToken": "deploy-progress",
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": { "name": "portcullis-test", "version": "0" },
            "io.modelcontextprotocol/clientCapabilities": {}
        } }
    });
    // Offer compression like a browser would, and see the bytes as they come (no
    // transparent decompression): an event stream must come back uncompressed.
    portcullis_test::ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .no_gzip()
        .no_deflate()
        .build()
        .expect("client");
    let started = Instant::now();
    let mut response = client
        .post(nginx.url())
        .header("accept-encoding", "gzip, deflate")
        .bearer_auth(API_KEY)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "slow")
        .json(&body)
        .send()
        .await
        .expect("POST through nginx");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("text/event-stream"),
        "{content_type}"
    );
    assert!(
        response.headers().get("content-encoding").is_none(),
        "event streams are not compressed"
    );
    // Each SSE event with the time it arrived.
    let mut events: Vec<(Duration, Value)> = Vec::new();
    let mut pending = String::new();
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .expect("the stream stalled")
        .expect("read the stream")
    {
        pending.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = pending.find("\n\n") {
            let event: String = pending.drain(..end + 2).collect();
            for data in event.lines().filter_map(|l| l.strip_prefix("data:")) {
                if let Ok(message) = serde_json::from_str::<Value>(data.trim()) {
                    events.push((started.elapsed(), message));
                }
            }
        }
    }
    let first_progress = events
        .iter()
        .find(|(_, m)| m["method"] == "notifications/progress")
        .unwrap_or_else(|| panic!("no progress notification: {events:?}"));
    assert_eq!(
        first_progress.1["params"]["progressToken"],
        "deploy-progress"
    );
    let result = events
        .iter()
        .find(|(_, m)| m["id"] == 1)
        .unwrap_or_else(|| panic!("no result: {events:?}"));
    assert_eq!(result.1["result"]["isError"], false, "{:?}", result.1);
    let lead = result.0.saturating_sub(first_progress.0);
    eprintln!(
        "through nginx: first progress at {:?}, result at {:?} (lead {lead:?})",
        first_progress.0, result.0
    );
    assert!(
        lead >= Duration::from_millis(500),
        "progress must arrive before the result, not buffered with it: progress at {:?}, result at {:?}",
        first_progress.0,
        result.0
    );
}

/// A failed authentication attempt, from `local` (the client's source address) to `url`,
/// claiming `forwarded` in X-Forwarded-For.
async fn failed_attempt(local: IpAddr, url: &str, forwarded: Option<&str>) -> StatusCode {
    portcullis_test::ensure_crypto_provider();
    let client = reqwest::Client::builder()
        .local_address(local)
        .build()
        .expect("client");
    let mut request = client
        .post(url)
        .bearer_auth("pcs_wrong-key")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body("{}");
    if let Some(forwarded) = forwarded {
        request = request.header("x-forwarded-for", forwarded);
    }
    request.send().await.expect("request").status()
}

#[tokio::test(flavor = "multi_thread")]
async fn forwarded_for_keys_the_per_ip_limit_only_from_a_trusted_proxy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = portcullis_for_proxy(dir.path()).await;
    let nginx = Nginx::start(server.addr).await;
    // nginx connects from 127.0.0.1 (trusted). The test's "clients" sit behind an outer
    // proxy on 127.0.0.1 too, which is where their X-Forwarded-For comes from; an
    // untrusted peer uses another loopback address, 127.0.0.2.
    let trusted = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let untrusted = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let (proxied, direct) = (nginx.url(), server.url());
    let attempts = |local, url: String, forwarded: &'static str, n: usize| async move {
        let mut statuses = Vec::new();
        for _ in 0..n {
            statuses.push(failed_attempt(local, &url, Some(forwarded)).await);
        }
        statuses
    };
    let unauthorized = StatusCode::UNAUTHORIZED;
    let limited = StatusCode::TOO_MANY_REQUESTS;

    // Through nginx: each forwarded client has a budget of three failures of its own.
    assert_eq!(
        attempts(trusted, proxied.clone(), "198.51.100.1", 4).await,
        [unauthorized, unauthorized, unauthorized, limited]
    );
    assert_eq!(
        attempts(trusted, proxied.clone(), "198.51.100.2", 1).await,
        [unauthorized],
        "another client behind the proxy has a fresh budget"
    );

    // Direct from an untrusted peer: the header is ignored, the peer's budget counts.
    assert_eq!(
        attempts(untrusted, direct.clone(), "198.51.100.3", 4).await,
        [unauthorized, unauthorized, unauthorized, limited]
    );
    assert_eq!(
        attempts(untrusted, direct.clone(), "198.51.100.4", 1).await,
        [limited],
        "a forged X-Forwarded-For from an untrusted peer gets no fresh budget"
    );
    assert_eq!(failed_attempt(untrusted, &direct, None).await, limited);
    // Through nginx from the untrusted peer: nginx appends 127.0.0.2, the right-most
    // untrusted address, so the forged entry left of it does not count either.
    assert_eq!(
        attempts(untrusted, proxied, "198.51.100.5", 1).await,
        [limited],
        "the chain is read from the right: the client is the peer nginx saw"
    );

    // The logs name the forwarded client, and never a forged address.
    let output = server.output().join("\n");
    assert!(output.contains(r#""ip":"198.51.100.1""#), "{output}");
    assert!(output.contains(r#""ip":"127.0.0.2""#), "{output}");
    for forged in ["198.51.100.3", "198.51.100.4", "198.51.100.5"] {
        assert!(
            !output.contains(forged),
            "{forged} reached the logs:\n{output}"
        );
    }
}

/// The proxies publish only what clients need: the MCP endpoint, its RFC 9728 metadata and
/// `/healthz`. `/metrics`, `/readyz` and every other path stay on Portcullis's own port,
/// where scrapers and probes reach it directly.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxies_publish_only_the_mcp_endpoint_its_metadata_and_healthz() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = portcullis_for_proxy(dir.path()).await;
    let nginx = Nginx::start(server.addr).await;
    let haproxy = crate::cluster::Haproxy::start(&[server.addr]).await;
    let client = portcullis_test::http();
    let get = |base: String, path: &'static str| {
        let request = client.get(format!("{base}{path}"));
        async move {
            let request = if path == "/metrics" {
                request.bearer_auth(METRICS_TOKEN)
            } else {
                request
            };
            request.send().await.expect("GET").status()
        }
    };
    let direct = format!("http://{}", server.addr);
    // Portcullis itself answers all of them.
    for path in ["/metrics", "/readyz", "/healthz"] {
        assert_eq!(get(direct.clone(), path).await, StatusCode::OK, "{path}");
    }
    let fronts = [
        ("nginx", format!("http://{}", nginx.addr)),
        ("haproxy", haproxy.url().trim_end_matches("/mcp").to_owned()),
    ];
    for (proxy, base) in fronts {
        let unauthenticated = client
            .post(format!("{base}/mcp"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body("{}")
            .send()
            .await
            .expect("POST /mcp")
            .status();
        assert_eq!(unauthenticated, StatusCode::UNAUTHORIZED, "{proxy}: /mcp");
        for path in ["/healthz", "/.well-known/oauth-protected-resource/mcp"] {
            assert_eq!(
                get(base.clone(), path).await,
                StatusCode::OK,
                "{proxy}: {path}"
            );
        }
        for path in [
            "/metrics",
            "/readyz",
            "/",
            "/sse",
            "/messages",
            "/mcpx",
            "/healthz/x",
        ] {
            assert_eq!(
                get(base.clone(), path).await,
                StatusCode::NOT_FOUND,
                "{proxy} publishes {path}"
            );
        }
    }
}
