//! Every check of the settings, in one place: one error type, one line naming the key.

use std::net::IpAddr;

use super::{ConfigError, Settings};

pub(super) fn invalid(key: &'static str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key, problem: problem.into() }
}

pub(super) fn validate(s: &Settings) -> Result<(), ConfigError> {
    s.bind.parse::<IpAddr>().map_err(|_| invalid("bind", format!("{:?} is not an IP address", s.bind)))?;
    super::redis_target::target(s)?;
    super::auth::verifier(s)?;
    let positive = [
        ("redis_timeout_ms", s.redis_timeout_ms),
        ("emit_interval_ms", s.emit_interval_ms),
        ("max_fanout_per_sec", s.max_fanout_per_sec),
        ("flush_interval_ms", s.flush_interval_ms),
        ("heartbeat_interval_ms", s.heartbeat_interval_ms),
        ("node_ttl_ms", s.node_ttl_ms),
        ("max_payload", s.max_payload),
        ("ping_interval_ms", s.ping_interval_ms),
        ("ping_timeout_ms", s.ping_timeout_ms),
        ("shutdown_grace_ms", s.shutdown_grace_ms),
    ];
    for (key, value) in positive {
        if value == 0 {
            return Err(invalid(key, "must be greater than 0"));
        }
    }
    for (key, value) in [
        ("max_connections", s.max_connections),
        ("ws_read_buffer_size", s.ws_read_buffer_size),
        ("socket_queue_packets", s.socket_queue_packets),
        ("max_rooms_per_client", s.max_rooms_per_client),
        ("room_events_per_sec", s.room_events_per_sec as usize),
        ("room_groups", usize::from(s.room_groups)),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be greater than 0"));
        }
    }
    if s.room_groups > 1024 {
        return Err(invalid("room_groups", "must be at most 1024"));
    }
    if s.node_ttl_ms <= s.heartbeat_interval_ms * 2 {
        return Err(invalid(
            "node_ttl_ms",
            format!(
                "must be more than twice heartbeat_interval_ms ({}), or live nodes get reaped",
                s.heartbeat_interval_ms
            ),
        ));
    }
    if s.redis_prefix.is_empty() || s.redis_prefix.contains(['{', '}', ' ']) {
        return Err(invalid("redis_prefix", "must be non-empty, without braces or spaces"));
    }
    if s.node_id.contains(char::is_whitespace) {
        return Err(invalid("node_id", "must not contain whitespace"));
    }
    validate_origins(&s.cors_origins)?;
    let (key, filter) = s.log_filter();
    tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| ConfigError::Invalid { key, problem: format!("{filter:?} is not a log filter: {e}") })?;
    validate_endpoint("otlp_endpoint", &s.otlp_endpoint)?;
    validate_webhooks(s)?;
    Ok(())
}

/// `"*"`, or origins such as `https://example.com` or `http://localhost:8080`.
fn validate_origins(origins: &[String]) -> Result<(), ConfigError> {
    if origins.is_empty() {
        return Err(invalid("cors_origins", "list at least one origin, or \"*\""));
    }
    for origin in origins.iter().filter(|o| *o != "*") {
        let uri: Option<axum::http::Uri> = origin.parse().ok();
        let is_origin = uri.as_ref().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https"))
                && u.authority().is_some()
                && u.path_and_query().is_none_or(|p| p.as_str().is_empty() || p.as_str() == "/")
        });
        if !is_origin || axum::http::HeaderValue::from_str(origin).is_err() {
            return Err(invalid(
                "cors_origins",
                format!("{origin:?} is not an origin (scheme://host[:port], e.g. https://example.com)"),
            ));
        }
    }
    Ok(())
}

/// Empty (off), or an `http://` / `https://` URL with a host.
fn validate_endpoint(key: &'static str, value: &str) -> Result<(), ConfigError> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(());
    }
    let uri: Option<axum::http::Uri> = value.parse().ok();
    match uri {
        Some(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some() => Ok(()),
        _ => Err(invalid(key, format!("{value:?} is not an http:// or https:// URL"))),
    }
}

fn validate_webhooks(s: &Settings) -> Result<(), ConfigError> {
    validate_endpoint("webhook_url", &s.webhook_url)?;
    for event in &s.webhook_events {
        if crate::presence::EventKind::from_name(event).is_none() {
            return Err(invalid(
                "webhook_events",
                format!("{event:?} is not one of room.occupied, room.vacated, member.joined, member.left"),
            ));
        }
    }
    if s.webhook_url.trim().is_empty() {
        return Ok(());
    }
    if s.webhook_secret.expose().len() < 16 {
        return Err(invalid(
            "webhook_secret",
            "must be at least 16 bytes when webhook_url is set (receivers verify it)",
        ));
    }
    for (key, value) in [
        ("webhook_batch_ms", s.webhook_batch_ms),
        ("webhook_max_attempts", u64::from(s.webhook_max_attempts)),
        ("webhook_timeout_ms", s.webhook_timeout_ms),
        ("webhook_log_max", s.webhook_log_max),
    ] {
        if value == 0 {
            return Err(invalid(key, "must be greater than 0"));
        }
    }
    Ok(())
}
