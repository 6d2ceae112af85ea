//! Layered settings: embedded `config/default.toml` < `--config FILE` < `ROLLCALL_*` env < flags.
//!
//! [`load`] takes the environment as a map so tests never mutate the process environment, and
//! every failure is a [`ConfigError`] that names the offending key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

mod auth;
mod redis_target;
mod validate;

pub use self::auth::verifier;
pub use self::redis_target::{ClusterTarget, Credentials, RedisTarget, SentinelTarget, Topology};
pub use crate::auth::AuthMode;

/// The defaults, compiled into the binary so a bare `rollcall serve` needs no files.
pub const DEFAULT_TOML: &str = include_str!("../../config/default.toml");

/// Prefix of the environment variables that override settings (`ROLLCALL_PORT`, ...).
pub const ENV_PREFIX: &str = "ROLLCALL";

/// Every setting of a node. Documented key by key in `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[allow(missing_docs)] // each field is documented in config/default.toml, the single source
pub struct Settings {
    pub bind: String,
    pub port: u16,
    pub redis_url: String,
    pub redis_prefix: String,
    pub redis_timeout_ms: u64,
    pub redis_username: String,
    pub redis_password: Secret,
    pub redis_sentinels: Vec<String>,
    pub redis_sentinel_master: String,
    pub redis_sentinel_username: String,
    pub redis_sentinel_password: Secret,
    pub redis_cluster_nodes: Vec<String>,
    pub redis_tls: bool,
    pub redis_tls_ca_file: PathBuf,
    pub redis_tls_cert_file: PathBuf,
    pub redis_tls_key_file: PathBuf,
    pub node_id: String,
    pub cors_origins: Vec<String>,
    pub emit_interval_ms: u64,
    pub max_fanout_per_sec: u64,
    pub flush_interval_ms: u64,
    pub heartbeat_interval_ms: u64,
    pub node_ttl_ms: u64,
    pub max_connections: usize,
    pub max_rooms_per_client: usize,
    pub auth: AuthMode,
    pub jwt_secret: Secret,
    pub jwt_public_key_file: PathBuf,
    pub jwt_audience: String,
    pub jwt_issuer: String,
    pub jwt_leeway_ms: u64,
    pub max_connections_per_user: usize,
    pub api_keys: Vec<Secret>,
    pub public_presence: bool,
    pub webhook_url: String,
    pub webhook_secret: Secret,
    pub webhook_events: Vec<String>,
    pub webhook_batch_ms: u64,
    pub webhook_max_attempts: u32,
    pub webhook_vacated_delay_ms: u64,
    pub webhook_timeout_ms: u64,
    pub webhook_log_max: u64,
    pub room_events_per_sec: u32,
    pub max_members_listed: u32,
    pub room_groups: u16,
    pub global_count: GlobalCount,
    pub max_payload: u64,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub ws_read_buffer_size: usize,
    pub socket_queue_packets: usize,
    pub lean_request_head: bool,
    pub http2: bool,
    pub client_bundle_dir: PathBuf,
    pub client_version: String,
    pub worker_threads: usize,
    pub shutdown_grace_ms: u64,
    pub log_format: LogFormat,
    pub log_level: String,
    pub otlp_endpoint: String,
    /// `RUST_LOG` from the environment map, when set: it wins over `log_level`.
    #[serde(skip)]
    pub rust_log: Option<String>,
}

/// What `refresh users` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GlobalCount {
    /// Sockets.
    Connections,
    /// Distinct users (signed users once, anonymous sockets each).
    Users,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable, coloured when on a terminal.
    Pretty,
    /// One JSON object per line, for log pipelines.
    Json,
}

/// A setting that must not be printed (a password): `Debug` shows only whether it is set.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "<redacted>" })
    }
}

/// Settings given as command-line flags: the top layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--config FILE`: a TOML file layered between the defaults and the environment.
    pub config_file: Option<PathBuf>,
    /// `--bind`.
    pub bind: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--redis-url`.
    pub redis_url: Option<String>,
    /// `--node-id`.
    pub node_id: Option<String>,
}

/// Why settings could not be loaded. The message always names the key or the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or a value has the wrong type.
    #[error("configuration error: {0}")]
    Source(#[from] config::ConfigError),
    /// A value has the right type but is not usable.
    #[error("configuration error: key `{key}`: {problem}")]
    Invalid {
        /// The setting's key, as in `config/default.toml`.
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

impl Settings {
    /// Standalone mode when no Redis URL is set.
    pub fn redis_url(&self) -> Option<&str> {
        Some(self.redis_url.trim()).filter(|url| !url.is_empty())
    }

    /// Where Redis is and how to reach it; `None` in standalone mode. `load` has checked it
    /// already, so an error here means a certificate file changed since.
    pub fn redis_target(&self) -> Result<Option<RedisTarget>, ConfigError> {
        redis_target::target(self)
    }

    /// The configured node id, or `<hostname>-<pid>` when empty.
    pub fn node_id_or_default(&self) -> String {
        if !self.node_id.trim().is_empty() {
            return self.node_id.trim().to_owned();
        }
        let host =
            hostname::get().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "node".to_owned());
        format!("{host}-{}", std::process::id())
    }

    /// How webhook events are produced, when `webhook_url` is set.
    pub fn event_policy(&self) -> Option<crate::presence::EventPolicy> {
        if self.webhook_url.trim().is_empty() {
            return None;
        }
        let wanted = |kind: &crate::presence::EventKind| self.webhook_events.iter().any(|e| e == kind.name());
        let kinds = crate::presence::EventKind::ALL
            .iter()
            .enumerate()
            .filter(|(_, kind)| wanted(kind))
            .fold(0u8, |bits, (i, _)| bits | (1 << i));
        Some(crate::presence::EventPolicy {
            kinds,
            vacated_delay_ms: self.webhook_vacated_delay_ms,
            log_max: self.webhook_log_max,
        })
    }

    /// The log filter in effect: `RUST_LOG` when set, else `log_level`, and the key it came from.
    pub fn log_filter(&self) -> (&'static str, &str) {
        match &self.rust_log {
            Some(directives) => ("RUST_LOG", directives),
            None => ("log_level", &self.log_level),
        }
    }

    /// Helper: a `*_ms` setting as a [`Duration`].
    pub fn ms(value: u64) -> Duration {
        Duration::from_millis(value)
    }
}

/// Loads settings from every layer. `env` is the process environment (or a test's map).
pub fn load(overrides: &Overrides, env: &HashMap<String, String>) -> Result<Settings, ConfigError> {
    let mut builder = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(path) = &overrides.config_file {
        builder = builder.add_source(file_source(path)?);
    }
    let env_map: config::Map<String, String> = env
        .iter()
        .filter(|(key, _)| key.starts_with(ENV_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .source(Some(env_map))
            .try_parsing(true)
            .list_separator(",")
            .with_list_parse_key("cors_origins")
            .with_list_parse_key("redis_sentinels")
            .with_list_parse_key("redis_cluster_nodes")
            .with_list_parse_key("api_keys")
            .with_list_parse_key("webhook_events"),
    );
    builder = builder
        .set_override_option("bind", overrides.bind.clone())?
        .set_override_option("port", overrides.port.map(i64::from))?
        .set_override_option("redis_url", overrides.redis_url.clone())?
        .set_override_option("node_id", overrides.node_id.clone())?;
    let mut settings: Settings = builder.build()?.try_deserialize()?;
    // `try_parsing` turns an all-digit id into a number and back; keep what the user typed.
    settings.node_id = settings.node_id.trim().to_owned();
    // Credentials exactly as typed: `try_parsing` would turn "0123" into 123.
    let verbatim = |key: &str| env.get(&format!("{ENV_PREFIX}_{key}")).cloned();
    if let Some(password) = verbatim("REDIS_PASSWORD") {
        settings.redis_password = Secret(password);
    }
    if let Some(secret) = verbatim("JWT_SECRET") {
        settings.jwt_secret = Secret(secret);
    }
    if let Some(secret) = verbatim("WEBHOOK_SECRET") {
        settings.webhook_secret = Secret(secret);
    }
    if let Some(keys) = verbatim("API_KEYS") {
        settings.api_keys = keys.split(',').filter(|k| !k.is_empty()).map(|k| Secret(k.to_owned())).collect();
    }
    if let Some(password) = verbatim("REDIS_SENTINEL_PASSWORD") {
        settings.redis_sentinel_password = Secret(password);
    }
    if let Some(username) = verbatim("REDIS_USERNAME") {
        settings.redis_username = username;
    }
    if let Some(username) = verbatim("REDIS_SENTINEL_USERNAME") {
        settings.redis_sentinel_username = username;
    }
    settings.rust_log = env.get("RUST_LOG").filter(|directives| !directives.trim().is_empty()).cloned();
    validate::validate(&settings)?;
    Ok(settings)
}

fn file_source(path: &Path) -> Result<File<config::FileSourceFile, FileFormat>, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::Invalid {
            key: "--config",
            problem: format!("{} is not a readable file", path.display()),
        });
    }
    Ok(File::from(path).format(FileFormat::Toml).required(true))
}
