//! Logging setup: an env-filter and a pretty or JSON formatter, chosen by the settings.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, Settings};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log_level`.
pub fn init(settings: &Settings) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.is_empty() => EnvFilter::try_new(directives)?,
        _ => EnvFilter::try_new(&settings.log_level)
            .map_err(|e| anyhow::anyhow!("configuration error: key `log_level`: {e}"))?,
    };
    let registry = tracing_subscriber::registry().with(filter);
    let installed = match settings.log_format {
        LogFormat::Pretty => registry.with(fmt::layer().with_writer(std::io::stderr)).try_init(),
        LogFormat::Json => {
            registry.with(fmt::layer().json().flatten_event(true).with_writer(std::io::stderr)).try_init()
        }
    };
    // Already installed (several nodes in one test process): keep the first.
    let _ = installed;
    Ok(())
}
