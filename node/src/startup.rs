//! Building a node ([`App::build`]) and running it until a shutdown future resolves
//! ([`App::run_until`]). `main` and the tests use exactly these two calls.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, Method};
use socketioxide::SocketIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::bundle::ClientBundle;
use crate::config::{self, GlobalCount, Settings};
use crate::coordinator::{self, Coordinator, Limits, PacingPolicy, Timing};
use crate::dashboard;
use crate::http::{self, HttpState};
use crate::metrics::Metrics;
use crate::presence::{Backend, MemoryBackend, RedisBackend, RedisOptions, RoomPolicy};
use crate::readmodel::ReadModel;
use crate::sockets::{self, Glue, clients::SocketIoClients};
use crate::webhooks::{self, Deliverer, Delivery};

/// A node, bound to its port and ready to run.
pub struct App {
    listener: TcpListener,
    router: Router,
    io: SocketIo,
    coordinator: Coordinator,
    model: ReadModel,
    draining: Arc<AtomicBool>,
    node_id: String,
    shutdown_grace: Duration,
    deliverer: Option<Deliverer>,
    http2: bool,
}

impl App {
    /// Binds the listener (port 0 picks a free port) and wires every part of the node, with the
    /// backend the settings choose.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let backend = backend_from(settings, metrics.clone())?;
        Self::build_with(settings, backend, metrics).await
    }

    /// Like [`App::build`], on a given backend: several nodes of one process can share one.
    pub async fn build_with(
        settings: &Settings,
        backend: Backend,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let node_id = settings.node_id_or_default();
        let (socket_io_svc, io) = socket_io(settings).build_svc();
        let clients = Arc::new(SocketIoClients(io.clone()));
        let mode = backend.presence.mode();
        let hints = webhooks::Hints::new(settings.room_groups);
        let deliverer = delivery(settings).map(|delivery| Deliverer {
            log: backend.events.clone(),
            node: node_id.as_str().into(),
            groups: settings.room_groups,
            delivery,
            metrics: metrics.clone(),
            hints: hints.clone(),
        });
        let (coordinator, commands, state) = Coordinator::new(
            node_id.as_str().into(),
            backend.presence.clone(),
            clients,
            metrics.clone(),
            coordinator_config(settings, deliverer.as_ref().map(|_| hints)),
        );
        let dead_letters = http::DeadLetters { log: backend.events.clone(), groups: settings.room_groups };
        let backend = backend.presence;
        let model = ReadModel::new(node_id.as_str().into(), mode, state);
        sockets::register(
            &io,
            Glue {
                commands,
                backend: backend.clone(),
                metrics: metrics.clone(),
                verifier: config::verifier(settings)?,
                max_rooms_per_client: settings.max_rooms_per_client,
                room_events_per_sec: settings.room_events_per_sec,
                max_connections_per_user: settings.max_connections_per_user,
                max_members_listed: settings.max_members_listed,
            },
        );
        let api_keys = http::ApiKeys::new(settings.api_keys.iter().map(|k| k.expose().to_owned()));
        dashboard::register(&io, model.clone(), api_keys.clone());
        let draining = Arc::new(AtomicBool::new(false));
        let backend_for_http = backend;
        let state = HttpState {
            model: model.clone(),
            draining: draining.clone(),
            max_connections: settings.max_connections,
            metrics,
            backend: backend_for_http,
            api_keys,
            public_presence: settings.public_presence,
            dead_letters,
            bundle: ClientBundle::load(&settings.client_bundle_dir, &settings.client_version),
        };
        let router = http::routes(state.clone())
            .route_service(
                "/socket.io/",
                http::LeanHeadLayer { enabled: settings.lean_request_head }.layer(socket_io_svc),
            )
            .layer(axum::middleware::from_fn_with_state(state, http::admission))
            .layer(cors(&settings.cors_origins));
        let ip: IpAddr = settings.bind.parse()?;
        let listener = TcpListener::bind(SocketAddr::new(ip, settings.port))
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}:{}: {e}", settings.bind, settings.port))?;
        Ok(Self {
            listener,
            router,
            io,
            coordinator,
            model,
            draining,
            node_id,
            shutdown_grace: Settings::ms(settings.shutdown_grace_ms),
            deliverer,
            http2: settings.http2,
        })
    }

    /// The port the node listens on.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map_or(0, |addr| addr.port())
    }

    /// This node's id in the cluster.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Serves until `shutdown` resolves, then drains within the shutdown grace period:
    /// readiness fails, the listener stops, this node's share leaves the count in one step,
    /// and local clients are disconnected so they reconnect to another node.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            io,
            coordinator,
            model,
            draining,
            node_id,
            shutdown_grace,
            deliverer,
            http2,
        } = self;
        tracing::info!(node = %node_id, addr = %listener.local_addr()?, "serving");
        let stop_accepting = CancellationToken::new();
        let stop_counting = CancellationToken::new();
        let server = tokio::spawn(http::serve(listener, router, http2, stop_accepting.clone()));
        let counting = tokio::spawn(coordinator.run(stop_counting.clone()));
        tokio::spawn(dashboard::feed(io.clone(), model, stop_counting.clone()));
        if let Some(deliverer) = deliverer {
            tokio::spawn(deliverer.run(stop_counting.clone()));
        }
        shutdown.await;
        draining.store(true, Ordering::Relaxed);
        tracing::info!(node = %node_id, grace = ?shutdown_grace, "draining");
        let drain = async {
            stop_accepting.cancel();
            stop_counting.cancel();
            let _ = counting.await;
            io.close().await;
            let _ = server.await;
        };
        if tokio::time::timeout(shutdown_grace, drain).await.is_err() {
            tracing::warn!(node = %node_id, "shutdown grace period expired; exiting anyway");
        }
        tracing::info!(node = %node_id, "stopped");
        Ok(())
    }
}

/// The one place the backend is chosen.
fn backend_from(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Backend> {
    Ok(match settings.redis_target()? {
        None => Backend::new(MemoryBackend::new(room_policy(settings))),
        Some(target) => Backend::new(RedisBackend::new(
            RedisOptions {
                target,
                prefix: settings.redis_prefix.clone(),
                timeout: Settings::ms(settings.redis_timeout_ms),
                node_ttl: Settings::ms(settings.node_ttl_ms),
                rooms: room_policy(settings),
            },
            metrics,
        )?),
    })
}

fn delivery(settings: &Settings) -> Option<Delivery> {
    let url = settings.webhook_url.trim();
    (!url.is_empty()).then(|| Delivery {
        url: url.to_owned(),
        secret: settings.webhook_secret.expose().as_bytes().to_vec(),
        batch: Settings::ms(settings.webhook_batch_ms),
        max_attempts: settings.webhook_max_attempts,
        timeout: Settings::ms(settings.webhook_timeout_ms),
    })
}

fn coordinator_config(settings: &Settings, hints: Option<Arc<webhooks::Hints>>) -> coordinator::Config {
    coordinator::Config {
        timing: Timing {
            flush_interval: Settings::ms(settings.flush_interval_ms),
            pacing: PacingPolicy {
                emit_interval: Settings::ms(settings.emit_interval_ms),
                max_fanout_per_sec: settings.max_fanout_per_sec,
            },
            heartbeat_interval: Settings::ms(settings.heartbeat_interval_ms),
        },
        limits: Limits {
            max_rooms_per_client: settings.max_rooms_per_client,
            global_counts_users: settings.global_count == GlobalCount::Users,
            token_leeway_secs: settings.jwt_leeway_ms.div_ceil(1000),
        },
        groups: settings.room_groups,
        hints,
    }
}

fn room_policy(settings: &Settings) -> RoomPolicy {
    RoomPolicy {
        groups: settings.room_groups,
        max_members_listed: settings.max_members_listed,
        events: settings.event_policy(),
    }
}

/// The smallest Engine.IO payload accepted: a CONNECT packet with an 8 KiB token and its rooms.
const HANDSHAKE_PAYLOAD: u64 = 12 * 1024;

fn socket_io(settings: &Settings) -> socketioxide::SocketIoBuilder {
    SocketIo::builder()
        // A handshake carries a token of up to 8 KiB whatever `max_payload` says for events.
        .max_payload(settings.max_payload.max(HANDSHAKE_PAYLOAD))
        // A client joining its 16 rooms gets an ack and a count for each (32 packets at once),
        // besides refreshes: what does not fit is dropped (`socket_queue_packets`).
        .max_buffer_size(settings.socket_queue_packets)
        .ws_read_buffer_size(settings.ws_read_buffer_size)
        .ping_interval(Settings::ms(settings.ping_interval_ms))
        .ping_timeout(Settings::ms(settings.ping_timeout_ms))
        .connect_timeout(Duration::from_secs(10))
}

/// CORS for the long-polling transport and the bundle. `config::validate` has checked every
/// origin already, so none is dropped here.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([axum::http::header::CONTENT_TYPE])
}
