//! Logging and tracing: an env-filter, a pretty or JSON formatter, and (when `otlp_endpoint` is
//! set) OTLP/gRPC export of spans — connect, disconnect, flush to Redis, reap.

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;
use tracing_subscriber::prelude::*;

use crate::config::{LogFormat, Settings};

/// Keeps the trace exporter alive; [`Telemetry::shutdown`] flushes it.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes buffered spans (bounded) and stops the exporter.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider
            && let Err(error) = provider.shutdown_with_timeout(Duration::from_secs(3))
        {
            tracing::warn!(%error, "could not flush traces");
        }
    }
}

/// Installs the global subscriber, with the filter `config::load` validated (`RUST_LOG` from the
/// environment map wins over `log_level`). Must run inside a Tokio runtime when OTLP export is on.
pub fn init(settings: &Settings, node_id: &str) -> anyhow::Result<Telemetry> {
    let filter = EnvFilter::try_new(settings.log_filter().1)?;
    let provider = otlp_provider(settings, node_id)?;
    // The connect/disconnect/flush/reap spans are at debug level: exported when OTLP is on,
    // never formatted into the logs (which would cost a line per connect).
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("rollcall"))
            .with_filter(EnvFilter::new("rollcall=debug"))
    });
    let registry = tracing_subscriber::registry().with(otel);
    let installed = match settings.log_format {
        LogFormat::Pretty => {
            registry.with(fmt::layer().with_writer(std::io::stderr).with_filter(filter)).try_init()
        }
        LogFormat::Json => registry
            .with(fmt::layer().json().flatten_event(true).with_writer(std::io::stderr).with_filter(filter))
            .try_init(),
    };
    // Already installed (several nodes in one test process): keep the first.
    let _ = installed;
    Ok(Telemetry { provider })
}

fn otlp_provider(settings: &Settings, node_id: &str) -> anyhow::Result<Option<SdkTracerProvider>> {
    let endpoint = settings.otlp_endpoint.trim();
    if endpoint.is_empty() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(Duration::from_secs(3))
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the OTLP exporter for {endpoint}: {e}"))?;
    let resource = Resource::builder()
        .with_service_name("rollcall")
        .with_attribute(KeyValue::new("service.instance.id", node_id.to_owned()))
        .build();
    Ok(Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build()))
}
