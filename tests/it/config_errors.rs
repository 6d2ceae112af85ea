//! Bad settings stop the process with one line naming the key, and a non-zero exit.

use std::collections::HashMap;

use rollcall_node::config::{self, Overrides};

fn load(pairs: &[(&str, &str)]) -> Result<config::Settings, config::ConfigError> {
    let env: HashMap<String, String> =
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    config::load(&Overrides::default(), &env)
}

#[test]
fn each_bad_value_is_reported_with_its_key() {
    let cases = [
        ("ROLLCALL_PORT", "abc", "port"),
        ("ROLLCALL_PORT", "70000", "port"),
        ("ROLLCALL_BIND", "not-an-ip", "bind"),
        ("ROLLCALL_REDIS_URL", "http://nope", "redis_url"),
        ("ROLLCALL_EMIT_INTERVAL_MS", "0", "emit_interval_ms"),
        ("ROLLCALL_FLUSH_INTERVAL_MS", "-5", "flush_interval_ms"),
        ("ROLLCALL_NODE_TTL_MS", "1500", "node_ttl_ms"),
        ("ROLLCALL_LOG_FORMAT", "xml", "log_format"),
        ("ROLLCALL_MAX_CONNECTIONS", "0", "max_connections"),
        ("ROLLCALL_REDIS_PREFIX", "a{b}", "redis_prefix"),
        ("ROLLCALL_CORS_ORIGINS", "not an origin", "cors_origins"),
        ("ROLLCALL_CORS_ORIGINS", "https://ok.example,ftp://x", "cors_origins"),
        ("ROLLCALL_LOG_LEVEL", "info,=[", "log_level"),
        ("RUST_LOG", "rollcall=[bad", "RUST_LOG"),
        ("ROLLCALL_OTLP_ENDPOINT", "localhost:4317", "otlp_endpoint"),
        ("ROLLCALL_WORKER_THREADS", "-1", "worker_threads"),
    ];
    for (key, value, named) in cases {
        let error = load(&[(key, value)]).expect_err(&format!("{key}={value} must be refused")).to_string();
        assert!(error.contains(named), "{key}={value}: message {error:?} does not name `{named}`");
    }
}

#[test]
fn layers_apply_in_order() {
    let defaults = load(&[]).expect("defaults are valid");
    assert_eq!(defaults.port, 3000);
    assert!(defaults.redis_url().is_none(), "standalone by default");

    let dir = std::env::temp_dir().join(format!("rollcall-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("node.toml");
    std::fs::write(&file, "port = 4100\nnode_id = \"from-file\"\nemit_interval_ms = 250\n").expect("write");
    let env: HashMap<String, String> =
        [("ROLLCALL_PORT", "4200"), ("ROLLCALL_CORS_ORIGINS", "http://a.test,http://b.test")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    let overrides =
        Overrides { config_file: Some(file), node_id: Some("from-flag".into()), ..Overrides::default() };
    let settings = config::load(&overrides, &env).expect("valid layers");
    assert_eq!(settings.emit_interval_ms, 250, "file over defaults");
    assert_eq!(settings.port, 4200, "env over file");
    assert_eq!(settings.node_id, "from-flag", "flag over file");
    assert_eq!(settings.cors_origins, ["http://a.test", "http://b.test"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn the_binary_exits_non_zero_with_one_line_and_no_panic() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .arg("serve")
        .env("ROLLCALL_PORT", "not-a-port")
        .output()
        .expect("run rollcall");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("port"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
