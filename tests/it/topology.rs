//! Redis as production runs it: TLS and mutual TLS, an ACL user with only rollcall's
//! permissions, Sentinel with a failover, Redis Cluster with rooms on every shard and a failover, and bad settings that say what is wrong in one line
//! (at startup: exit 2; at connect time: the degraded state and one log line with the reason).

mod acl;
mod cluster;
pub(crate) mod cluster_set;
mod failover;
mod logged;
pub(crate) mod sentinel;
mod tls;

use std::collections::HashMap;

use rollcall_node::config::{self, Overrides};
use rust_socketio::TransportType;

use self::logged::LoggedNode;
use self::tls::{Pki, TlsRedis};
use crate::helpers::{
    RedisServer, all_show, connect_many, free_port, node_env, presence, spawn_node, unique_prefix,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_count_over_tls_and_mutual_tls() {
    let pki = Pki::new("count");
    let tls = TlsRedis::start(&pki, false).await;
    let mtls = TlsRedis::start(&pki, true).await;
    let (prefix, ca) = (unique_prefix("tls"), pki.path("ca.pem"));
    let trusting = [("ROLLCALL_REDIS_TLS_CA_FILE", ca.as_str())];
    let a = spawn_node(Some(&tls.url()), &prefix, "a", &trusting).await;
    let b = spawn_node(Some(&tls.url()), &prefix, "b", &trusting).await;
    let (cert, key) = (pki.path("client.pem"), pki.path("client.key"));
    let identified = [
        ("ROLLCALL_REDIS_TLS_CA_FILE", ca.as_str()),
        ("ROLLCALL_REDIS_TLS_CERT_FILE", cert.as_str()),
        ("ROLLCALL_REDIS_TLS_KEY_FILE", key.as_str()),
    ];
    let c = spawn_node(Some(&mtls.url()), &prefix, "c", &identified).await;

    let over_tls = connect_many(&[a.url(), b.url()], 20, TransportType::Websocket).await;
    let over_mtls = connect_many(&[c.url()], 7, TransportType::Websocket).await;
    all_show(&over_tls, 20).await;
    all_show(&over_mtls, 7).await;
    for node in [&a, &b, &c] {
        let doc = node.presence().await;
        assert_eq!(doc["degraded"], false, "{doc}");
        assert_eq!(doc["mode"], "redis", "{doc}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_problems_found_when_connecting_are_one_degraded_line_with_the_reason() {
    let pki = Pki::new("problems");
    let (tls, mtls, plain) =
        tokio::join!(TlsRedis::start(&pki, false), TlsRedis::start(&pki, true), RedisServer::start());
    let prefix = unique_prefix("tls-problems");
    let (ca, other_ca) = (pki.path("ca.pem"), pki.path("other-ca.pem"));
    let localhost = format!("rediss://localhost:{}", tls.port);
    let plain_as_tls = format!("rediss://127.0.0.1:{}", plain.port);
    let tls_as_plain = format!("redis://127.0.0.1:{}", tls.port);
    // (what, URL, CA file, what the reason must mention)
    let cases = [
        ("no client certificate for a server that requires one", mtls.url(), &ca, "CertificateRequired"),
        ("a server certificate from an untrusted CA", tls.url(), &other_ca, "UnknownIssuer"),
        ("a server certificate for another name", localhost, &ca, "not valid for name"),
        ("rediss:// against a plain port", plain_as_tls, &ca, "is it the server's tls-port?"),
        ("redis:// against a TLS port", tls_as_plain, &String::new(), "does the URL need rediss://?"),
    ];
    let nodes = futures_util::future::join_all(cases.iter().map(|(what, url, ca_file, _)| {
        let mut env = node_env(Some(url), &prefix, &what.replace(' ', "-"));
        env.insert("ROLLCALL_REDIS_TLS_CA_FILE".into(), (*ca_file).clone());
        async move { LoggedNode::start(&env).await }
    }))
    .await;
    for ((what, _, _, reason), node) in cases.iter().zip(&nodes) {
        let line = node.degraded_with("cannot write to the backend").await;
        eprintln!("{what}: {line}");
        assert!(line.contains(reason), "{what}: the line does not mention {reason:?}: {line}");
        assert_eq!(presence(&node.url()).await["users"], serde_json::Value::Null, "{what}: no number shown");
        assert!(!node.log().contains("panicked"), "{what}: {}", node.log());
    }
    // Retries go on with backoff; the reason is logged once, not once per retry.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    for ((what, ..), node) in cases.iter().zip(&nodes) {
        assert_eq!(node.lines_with("cannot write to the backend").len(), 1, "{what}: {}", node.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_over_tls_finds_and_uses_the_tls_primary() {
    let pki = Pki::new("sentinel-tls");
    let primary = TlsRedis::start(&pki, false).await;
    let watching = TlsRedis::sentinel(&pki, primary.port, "tls-primary").await;
    let prefix = unique_prefix("sentinel-tls");
    let (sentinels, ca) = (format!("127.0.0.1:{}", watching.port), pki.path("ca.pem"));
    let settings = [
        ("ROLLCALL_REDIS_SENTINELS", sentinels.as_str()),
        ("ROLLCALL_REDIS_SENTINEL_MASTER", "tls-primary"),
        ("ROLLCALL_REDIS_TLS", "true"),
        ("ROLLCALL_REDIS_TLS_CA_FILE", ca.as_str()),
    ];
    let a = spawn_node(None, &prefix, "a", &settings).await;
    let b = spawn_node(None, &prefix, "b", &settings).await;
    let clients = connect_many(&[a.url(), b.url()], 12, TransportType::Websocket).await;
    all_show(&clients, 12).await;
    assert_eq!(a.presence().await["degraded"], false);
}

fn load(pairs: &[(&str, &str)]) -> Result<config::Settings, config::ConfigError> {
    let env: HashMap<String, String> =
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    config::load(&Overrides::default(), &env)
}

#[test]
fn bad_redis_settings_are_refused_at_startup_naming_the_key() {
    let pki = Pki::new("settings");
    let (ca, cert, key, server_key) =
        (pki.path("ca.pem"), pki.path("client.pem"), pki.path("client.key"), pki.path("server.key"));
    let not_pem = pki.write("not.pem", "this is not a certificate\n");
    let missing = pki.path("missing.pem");
    let tls = ("ROLLCALL_REDIS_URL", "rediss://127.0.0.1:6380");
    let url = ("ROLLCALL_REDIS_URL", "redis://127.0.0.1:6379");
    let sentinels = ("ROLLCALL_REDIS_SENTINELS", "127.0.0.1:26379,127.0.0.1:26380");
    let master = ("ROLLCALL_REDIS_SENTINEL_MASTER", "main");
    let cluster = ("ROLLCALL_REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1:7001");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![tls, ("ROLLCALL_REDIS_TLS_CA_FILE", &missing)], "redis_tls_ca_file"),
        (vec![tls, ("ROLLCALL_REDIS_TLS_CA_FILE", &not_pem)], "redis_tls_ca_file"),
        (vec![tls, ("ROLLCALL_REDIS_TLS_CERT_FILE", &cert)], "redis_tls_key_file"),
        (vec![tls, ("ROLLCALL_REDIS_TLS_KEY_FILE", &key)], "redis_tls_cert_file"),
        (
            vec![tls, ("ROLLCALL_REDIS_TLS_CERT_FILE", &not_pem), ("ROLLCALL_REDIS_TLS_KEY_FILE", &key)],
            "redis_tls_cert_file",
        ),
        (
            vec![tls, ("ROLLCALL_REDIS_TLS_CERT_FILE", &cert), ("ROLLCALL_REDIS_TLS_KEY_FILE", &server_key)],
            "redis_tls_key_file",
        ),
        (vec![url, ("ROLLCALL_REDIS_TLS_CA_FILE", &ca)], "redis_tls_ca_file"),
        (vec![url, ("ROLLCALL_REDIS_TLS", "true")], "redis_tls"),
        (vec![("ROLLCALL_REDIS_URL", "rediss://127.0.0.1:6380/#insecure")], "redis_url"),
        (
            vec![("ROLLCALL_REDIS_URL", "redis://:secret@127.0.0.1"), ("ROLLCALL_REDIS_PASSWORD", "other")],
            "redis_password",
        ),
        (vec![url, ("ROLLCALL_REDIS_USERNAME", "rollcall")], "redis_username"),
        (vec![url, sentinels, master], "redis_sentinels"),
        (vec![sentinels], "redis_sentinel_master"),
        (vec![master], "redis_sentinel_master"),
        (vec![("ROLLCALL_REDIS_SENTINELS", "127.0.0.1"), master], "redis_sentinels"),
        (vec![("ROLLCALL_REDIS_SENTINELS", "127.0.0.1:0"), master], "redis_sentinels"),
        (vec![sentinels, master, ("ROLLCALL_REDIS_TLS_CA_FILE", &ca)], "redis_tls_ca_file"),
        (vec![url, cluster], "redis_cluster_nodes"),
        (vec![sentinels, master, cluster], "redis_cluster_nodes"),
        (vec![cluster, master], "redis_sentinel_master"),
        (vec![("ROLLCALL_REDIS_CLUSTER_NODES", "127.0.0.1:7000,127.0.0.1")], "redis_cluster_nodes"),
        (vec![("ROLLCALL_REDIS_CLUSTER_NODES", "127.0.0.1:70000")], "redis_cluster_nodes"),
        (vec![cluster, ("ROLLCALL_REDIS_USERNAME", "rollcall")], "redis_username"),
        (vec![cluster, ("ROLLCALL_REDIS_TLS_CA_FILE", &ca)], "redis_tls_ca_file"),
    ];
    for (pairs, named) in cases {
        let error = load(&pairs).expect_err(&format!("{pairs:?} must be refused")).to_string();
        assert!(error.contains(&format!("`{named}`")), "{pairs:?}: {error:?} does not name `{named}`");
        assert!(!error.contains("secret"), "a password leaked into {error:?}");
    }
    let fine = [
        vec![
            tls,
            ("ROLLCALL_REDIS_TLS_CA_FILE", &ca),
            ("ROLLCALL_REDIS_TLS_CERT_FILE", &cert),
            ("ROLLCALL_REDIS_TLS_KEY_FILE", &key),
        ],
        vec![sentinels, master, ("ROLLCALL_REDIS_TLS", "true"), ("ROLLCALL_REDIS_TLS_CA_FILE", &ca)],
        vec![url, ("ROLLCALL_REDIS_USERNAME", "rollcall"), ("ROLLCALL_REDIS_PASSWORD", "0123")],
        vec![cluster, ("ROLLCALL_REDIS_USERNAME", "rollcall"), ("ROLLCALL_REDIS_PASSWORD", "0123")],
        vec![cluster, ("ROLLCALL_REDIS_TLS", "true"), ("ROLLCALL_REDIS_TLS_CA_FILE", &ca)],
    ];
    for pairs in fine {
        load(&pairs).unwrap_or_else(|e| panic!("{pairs:?} is valid: {e}"));
    }
    let settings = load(&[url, ("ROLLCALL_REDIS_PASSWORD", "0123")]).expect("valid");
    assert_eq!(settings.redis_password.expose(), "0123", "a password is taken exactly as typed");
    assert!(!format!("{settings:?}").contains("0123"), "Debug never shows the password");
}

#[test]
fn a_missing_certificate_file_stops_the_binary_with_one_line() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .arg("serve")
        .env("ROLLCALL_REDIS_URL", "rediss://127.0.0.1:6380")
        .env("ROLLCALL_REDIS_TLS_CA_FILE", "/nonexistent/ca.pem")
        .output()
        .expect("run rollcall");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("redis_tls_ca_file") && stderr.contains("/nonexistent/ca.pem"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sentinels_and_a_wrong_master_name_are_one_degraded_line() {
    let dir = std::env::temp_dir().join(format!("rollcall-wrong-master-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let primary = sentinel::redis_server(&[]).await;
    let watching = sentinel::sentinel(&dir, primary.port).await;
    let prefix = unique_prefix("bad-sentinel");
    let nobody = format!("127.0.0.1:{},127.0.0.1:{}", free_port(), free_port());
    let one = format!("127.0.0.1:{}", watching.port);
    let cases = [("nobody listens", nobody, sentinel::MASTER), ("wrong master name", one, "no-such-master")];
    for (what, sentinels, master) in cases {
        let mut env = node_env(None, &prefix, &what.replace(' ', "-"));
        env.insert("ROLLCALL_REDIS_SENTINELS".into(), sentinels.clone());
        env.insert("ROLLCALL_REDIS_SENTINEL_MASTER".into(), master.into());
        let node = LoggedNode::start(&env).await;
        let line = node.degraded_with("cannot write to the backend").await;
        eprintln!("{what}: {line}");
        assert!(line.contains("cannot find the primary") && line.contains(master), "{what}: {line}");
        assert!(line.contains(&sentinels), "{what}: names the sentinels asked: {line}");
    }
    let _ = std::fs::remove_dir_all(dir);
}
