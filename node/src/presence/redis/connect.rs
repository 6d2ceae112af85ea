//! How a node reaches Redis: one server (plain or TLS, with an ACL user), the primary that
//! Sentinel names, or a Redis Cluster (`cluster.rs`). The [`Connector`] hands out the two kinds
//! of connection the backend needs — script connections and a fresh subscription for the
//! subscriber — and every new connection goes where the settings say *now*: through Sentinel,
//! that is the current primary, so after a failover both kinds follow the promoted replica; on
//! a cluster, the slot's primary as the cluster says.

use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleError, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection, PubSubStream};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, RedisError, RedisResult, Role, TlsMode};

use super::BackendError;
use super::cluster::{ClusterRoute, ShardedSubscription};
use crate::config::{RedisTarget, SentinelTarget, Topology};

/// Opens connections to the Redis that the settings name.
pub(super) struct Connector {
    route: Route,
    /// Deadline of one operation (`redis_timeout_ms`): for each reply on a connection.
    timeout: Duration,
    /// Whether connections use TLS, for the hint when a handshake never finishes.
    tls: bool,
}

enum Route {
    /// One server: its client holds the address, the credentials and the certificates.
    Server(Client),
    /// Each new connection first asks the sentinels for the current primary.
    Sentinel {
        /// Keeps connections to the sentinels between look-ups; one look-up at a time.
        lookup: tokio::sync::Mutex<SentinelClient>,
        /// For error messages: the master name and the sentinels asked.
        described: String,
    },
    /// A Redis Cluster: the slot's primary, as the cluster says.
    Cluster(ClusterRoute),
}

impl Connector {
    /// Prepares the route; connects to nothing yet, so a node starts while Redis is down.
    pub fn new(target: &RedisTarget, timeout: Duration) -> RedisResult<Self> {
        if target.tls.is_some() {
            // The one crypto provider compiled in; a second call (another node in this
            // process) finds it installed already, which is fine.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let route = match &target.topology {
            Topology::Server(info) => Route::Server(match &target.tls {
                Some(certificates) => Client::build_with_tls(info.clone(), certificates.clone())?,
                None => Client::open(info.clone())?,
            }),
            Topology::Sentinel(sentinel) => Route::Sentinel {
                lookup: tokio::sync::Mutex::new(sentinel_client(sentinel, target)?),
                described: format!(
                    "primary {:?} from the sentinels {}",
                    sentinel.master,
                    sentinel.sentinels.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",")
                ),
            },
            Topology::Cluster(cluster) => {
                Route::Cluster(ClusterRoute::new(cluster, target.tls.clone(), timeout)?)
            }
        };
        Ok(Self { route, timeout, tls: target.tls.is_some() })
    }

    /// Whether announcements go on sharded channels (SPUBLISH / SSUBSCRIBE): on a cluster.
    pub fn sharded(&self) -> bool {
        matches!(self.route, Route::Cluster(_))
    }

    /// A pool of script connections, at most `max_size`, each checked before it is reused (on a
    /// cluster: its one multiplexed cluster connection).
    pub fn script_pool(self: &Arc<Self>, max_size: usize) -> ScriptPool {
        if self.sharded() {
            return ScriptPool::Cluster(self.clone());
        }
        let timeouts = managed::Timeouts {
            wait: Some(self.timeout),
            create: Some(self.timeout),
            recycle: Some(self.timeout),
        };
        let pool = managed::Pool::builder(ScriptManager(self.clone()))
            .max_size(max_size)
            .timeouts(timeouts)
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and timeouts always builds");
        ScriptPool::Pooled(pool)
    }

    /// A new connection to the server the scripts must run on.
    async fn connection(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.timeout));
        self.bounded(async {
            self.primary().await?.get_multiplexed_async_connection_with_config(&config).await
        })
        .await
    }

    /// `channels` subscribed over a new dedicated connection to where the scripts publish them.
    pub async fn subscribe(&self, channels: &[String]) -> RedisResult<Subscription> {
        if let Route::Cluster(cluster) = &self.route {
            return cluster.subscribe(channels).await.map(Subscription::Sharded);
        }
        let mut pubsub = self.bounded(async { self.primary().await?.get_async_pubsub().await }).await?;
        pubsub.subscribe(channels).await?;
        Ok(Subscription::Plain(pubsub.into_on_message()))
    }

    /// A new connection to the cluster, bounded like every connection attempt.
    async fn cluster_connection(&self, cluster: &ClusterRoute) -> RedisResult<ClusterConnection> {
        self.bounded(cluster.connection()).await
    }

    /// Bounds a connection attempt by 3/4 of the operation deadline: when connecting is what
    /// fails, its own reason, not the caller's bare timeout, is what reaches the log. The two
    /// ways a TLS mismatch shows get a hint.
    async fn bounded<T>(&self, attempt: impl Future<Output = RedisResult<T>>) -> RedisResult<T> {
        use std::io::{Error, ErrorKind};
        let deadline = self.timeout * 3 / 4;
        match tokio::time::timeout(deadline, attempt).await {
            Ok(Err(e)) if !self.tls && reset(&e) => {
                let hint = "a TLS port resets plain connections: does the URL need rediss://?";
                Err(Error::new(ErrorKind::ConnectionReset, format!("{e} ({hint})")).into())
            }
            Ok(result) => result,
            Err(_) => {
                let hint = if self.tls {
                    " (a plain Redis port never answers a TLS handshake: is it the server's tls-port?)"
                } else {
                    ""
                };
                let message = format!("no connection to Redis within {deadline:?}{hint}");
                Err(Error::new(ErrorKind::TimedOut, message).into())
            }
        }
    }

    /// The client for the current primary.
    async fn primary(&self) -> RedisResult<Client> {
        match &self.route {
            Route::Server(client) => Ok(client.clone()),
            Route::Cluster(cluster) => {
                Err(std::io::Error::other(format!("{} has no single primary", cluster.described)).into())
            }
            Route::Sentinel { lookup, described } => {
                // Boxed: the look-up's future is deep, and the pool's future holds it.
                let found = Box::pin(async { lookup.lock().await.async_get_client().await }).await;
                found.map_err(|e| std::io::Error::other(format!("cannot find the {described}: {e}")).into())
            }
        }
    }

    /// Whether a pooled connection may be used again: it answers, and (through Sentinel) its
    /// server is still the primary — an old primary that came back as a replica must not be
    /// written to, and a connection to it would otherwise answer PING forever.
    async fn still_usable(&self, conn: &mut MultiplexedConnection) -> RecycleResult<RedisError> {
        match self.route {
            Route::Server(_) | Route::Cluster(_) => {
                redis::cmd("PING").query_async::<String>(conn).await?;
            }
            Route::Sentinel { .. } => {
                let role: Role = redis::cmd("ROLE").query_async(conn).await?;
                if !matches!(role, Role::Primary { .. }) {
                    return Err(RecycleError::message("the server is no longer the primary"));
                }
            }
        }
        Ok(())
    }
}

/// Whether the server reset the connection: what a TLS port does to a plain client.
fn reset(error: &RedisError) -> bool {
    // The crate keeps its I/O errors behind an `Arc`, which is what `source` shows.
    type Shared = Arc<dyn std::error::Error + Send + Sync>;
    let source = std::error::Error::source(error).and_then(|source| source.downcast_ref::<Shared>());
    let io = source.and_then(|shared| shared.downcast_ref::<std::io::Error>());
    io.is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionReset)
}

/// Sentinel look-ups for `sentinel.master`, with the same TLS for the sentinels and the
/// primary, and each side's own credentials.
fn sentinel_client(sentinel: &SentinelTarget, target: &RedisTarget) -> RedisResult<SentinelClient> {
    let addresses = sentinel.sentinels.iter().map(|(host, port)| match target.tls {
        Some(_) => {
            ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
        }
        None => ConnectionAddr::Tcp(host.clone(), *port),
    });
    let mut builder = SentinelClientBuilder::new(addresses, &sentinel.master, SentinelServerType::Master)?;
    if let Some(certificates) = &target.tls {
        builder = builder
            .set_client_to_redis_tls_mode(TlsMode::Secure)
            .set_client_to_redis_certificates(certificates.clone())
            .set_client_to_sentinel_tls_mode(TlsMode::Secure)
            .set_client_to_sentinel_certificates(certificates.clone());
    }
    let (auth, sentinel_auth) = (&sentinel.auth, &sentinel.sentinel_auth);
    if let Some(username) = &auth.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &auth.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(username) = &sentinel_auth.username {
        builder = builder.set_client_to_sentinel_username(username);
    }
    if let Some(password) = &sentinel_auth.password {
        builder = builder.set_client_to_sentinel_password(password);
    }
    builder.build()
}

/// Creates script connections through the [`Connector`] and checks them before reuse.
pub(super) struct ScriptManager(Arc<Connector>);

impl managed::Manager for ScriptManager {
    type Type = MultiplexedConnection;
    type Error = RedisError;

    async fn create(&self) -> RedisResult<MultiplexedConnection> {
        self.0.connection().await
    }

    async fn recycle(&self, conn: &mut MultiplexedConnection, _: &Metrics) -> RecycleResult<RedisError> {
        self.0.still_usable(conn).await
    }
}

/// The connections the scripts run on.
pub(super) enum ScriptPool {
    /// One server or Sentinel: a pool of checked connections to the primary.
    Pooled(managed::Pool<ScriptManager>),
    /// A cluster: one multiplexed connection that routes each call to its slot's primary.
    Cluster(Arc<Connector>),
}

impl ScriptPool {
    /// A checked connection to the primary (an idle one, or a new one), or the cluster connection.
    pub async fn get(&self) -> Result<ScriptConnection, PoolError<RedisError>> {
        match self {
            Self::Pooled(pool) => pool.get().await.map(ScriptConnection::Pooled),
            Self::Cluster(connector) => match &connector.route {
                Route::Cluster(cluster) => connector
                    .cluster_connection(cluster)
                    .await
                    .map(ScriptConnection::Cluster)
                    .map_err(PoolError::Backend),
                _ => unreachable!("a cluster pool is made only for a cluster route"),
            },
        }
    }

    /// After a failed call: on a cluster, a failure on the way to it (not a script's own error)
    /// makes the next call start from the seed nodes again.
    pub fn failed(&self, error: &BackendError) {
        let Self::Cluster(connector) = self else { return };
        let Route::Cluster(cluster) = &connector.route else { return };
        let lost = match error {
            BackendError::Timeout(_) | BackendError::Pool(_) => true,
            BackendError::Redis(e) => e.is_io_error() || e.is_cluster_error() || e.is_unrecoverable_error(),
            BackendError::Reply(_) | BackendError::Parse(_) => false,
        };
        if lost {
            cluster.forget();
        }
    }
}

/// A connection the scripts run on; a pooled one goes back to the pool when dropped.
pub(super) enum ScriptConnection {
    /// From the pool of one server or Sentinel.
    Pooled(Object<ScriptManager>),
    /// The cluster connection (a cheap clone).
    Cluster(ClusterConnection),
}

impl ConnectionLike for ScriptConnection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Self::Pooled(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Self::Pooled(conn) => conn.req_packed_commands(pipeline, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Pooled(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}

/// A subscription's messages, from one pub/sub connection or from a cluster's shards.
pub(super) enum Subscription {
    /// SUBSCRIBE on one server.
    Plain(PubSubStream),
    /// SSUBSCRIBE on each channel's shard.
    Sharded(ShardedSubscription),
}

impl Subscription {
    /// The next message; `None` when the subscription is lost.
    pub async fn next(&mut self) -> Option<redis::Msg> {
        use futures_util::StreamExt;
        match self {
            Self::Plain(stream) => stream.next().await,
            Self::Sharded(sharded) => sharded.next().await,
        }
    }
}
