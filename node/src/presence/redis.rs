//! Cluster mode: the count lives in Redis; Lua scripts change it and announce it atomically.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::{Pool, PoolConfig, Runtime, Timeouts};
use futures_util::StreamExt;
use redis::FromRedisValue;
use tokio::sync::mpsc;

use super::scripts::Scripts;
use super::{BackendError, BackendEvent, NodeInfo, PresenceBackend, ShareWrite, Snapshot};
use crate::metrics::Metrics;

/// How to reach Redis and how this cluster's keys are named.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// `redis://` URL.
    pub url: String,
    /// Prefix of every key and channel (the hash tag of all of them).
    pub prefix: String,
    /// Deadline of one Redis operation.
    pub timeout: Duration,
    /// A node whose heartbeat is older than this is dead.
    pub node_ttl: Duration,
}

/// The Redis backend: a small pool for scripts, a dedicated connection for pub/sub.
pub struct RedisBackend {
    client: redis::Client,
    pool: Pool,
    scripts: Arc<Scripts>,
    keys: [String; 4],
    channel: String,
    options: RedisOptions,
    metrics: Arc<Metrics>,
}

/// The announcement published on `{prefix}:updates`.
#[derive(serde::Deserialize)]
struct Announcement {
    v: u64,
    users: i64,
}

impl RedisBackend {
    /// Builds the pool; connects lazily, so a node starts even while Redis is down.
    pub fn new(options: RedisOptions, metrics: Arc<Metrics>) -> Result<Self, BackendError> {
        let client = redis::Client::open(options.url.as_str())?;
        let mut config = deadpool_redis::Config::from_url(options.url.clone());
        config.pool = Some(PoolConfig {
            max_size: 4,
            timeouts: Timeouts {
                wait: Some(options.timeout),
                create: Some(options.timeout),
                recycle: Some(options.timeout),
            },
            ..PoolConfig::default()
        });
        let pool =
            config.create_pool(Some(Runtime::Tokio1)).map_err(|e| BackendError::Pool(e.to_string()))?;
        let tag = format!("{{{}}}", options.prefix);
        Ok(Self {
            client,
            pool,
            scripts: Arc::new(Scripts::new()),
            keys: ["total", "version", "shares", "nodes"].map(|k| format!("{tag}:{k}")),
            channel: format!("{tag}:updates"),
            options,
            metrics,
        })
    }

    /// Runs one script under the command deadline, recording latency and failure.
    async fn run<T: FromRedisValue>(
        &self,
        operation: &'static str,
        script: &redis::Script,
        args: &[String],
    ) -> Result<T, BackendError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.options.timeout, async {
            let mut conn = self.pool.get().await.map_err(|e| BackendError::Pool(e.to_string()))?;
            let mut invocation = script.prepare_invoke();
            for key in &self.keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            // EVALSHA first; after a Redis restart (NOSCRIPT) the crate loads the script again.
            Ok(invocation.invoke_async(&mut conn).await?)
        })
        .await
        .unwrap_or(Err(BackendError::Timeout(self.options.timeout)));
        self.metrics.observe_redis(operation, started.elapsed(), result.is_ok());
        result
    }

    fn ttl_ms(&self) -> String {
        self.options.node_ttl.as_millis().to_string()
    }
}

fn version(value: i64) -> Result<u64, BackendError> {
    u64::try_from(value).map_err(|_| BackendError::Reply(format!("negative version {value}")))
}

#[async_trait]
impl PresenceBackend for RedisBackend {
    async fn write_share(&self, node: &str, share: i64, floor: u64) -> Result<ShareWrite, BackendError> {
        let args =
            [node.to_owned(), share.to_string(), self.ttl_ms(), floor.to_string(), self.channel.clone()];
        let (total, v, restored, reaped, nodes_alive): (i64, i64, i64, u32, u32) =
            self.run("write_share", &self.scripts.write_share, &args).await?;
        Ok(ShareWrite {
            snapshot: Snapshot { total, version: version(v)? },
            restored: restored == 1,
            reaped,
            nodes_alive,
        })
    }

    async fn deregister(&self, node: &str, floor: u64) -> Result<Snapshot, BackendError> {
        let args = [node.to_owned(), floor.to_string(), self.channel.clone()];
        let (total, v): (i64, i64) = self.run("deregister", &self.scripts.deregister, &args).await?;
        Ok(Snapshot { total, version: version(v)? })
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, BackendError> {
        let reply: Vec<redis::Value> = self.run("nodes", &self.scripts.nodes, &[]).await?;
        parse_nodes(&reply, self.options.node_ttl)
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        let subscriber = Subscriber {
            client: self.client.clone(),
            channel: self.channel.clone(),
            timeout: self.options.timeout,
            metrics: self.metrics.clone(),
        };
        tokio::spawn(subscriber.run(events));
    }

    fn mode(&self) -> &'static str {
        "redis"
    }
}

fn parse_nodes(reply: &[redis::Value], ttl: Duration) -> Result<Vec<NodeInfo>, BackendError> {
    let bad = |what: &str| BackendError::Reply(format!("nodes script: {what}"));
    let (now, rest) = reply.split_first().ok_or_else(|| bad("empty reply"))?;
    let now = i64::from_redis_value(now.clone()).map_err(|_| bad("clock"))?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    rest.chunks_exact(3)
        .map(|entry| {
            let id = String::from_redis_value(entry[0].clone()).map_err(|_| bad("node id"))?;
            let users = i64::from_redis_value(entry[1].clone()).map_err(|_| bad("share"))?;
            let deadline = i64::from_redis_value(entry[2].clone()).map_err(|_| bad("deadline"))?;
            let age = (now - (deadline - ttl_ms)).max(0);
            Ok(NodeInfo { id, users, heartbeat_age_ms: age.unsigned_abs() })
        })
        .collect()
}

/// The pub/sub side: one dedicated connection, re-established with capped backoff.
struct Subscriber {
    client: redis::Client,
    channel: String,
    timeout: Duration,
    metrics: Arc<Metrics>,
}

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(1);

impl Subscriber {
    /// Runs until the receiver of `events` is dropped.
    async fn run(self, events: mpsc::Sender<BackendEvent>) {
        let mut backoff = BACKOFF_FIRST;
        let mut outage_logged = false;
        while !events.is_closed() {
            let connect = async {
                let mut pubsub = self.client.get_async_pubsub().await?;
                pubsub.subscribe(&self.channel).await?;
                Ok::<_, redis::RedisError>(pubsub)
            };
            let attempt = Instant::now();
            match tokio::time::timeout(self.timeout, connect).await {
                Ok(Ok(pubsub)) => {
                    if outage_logged {
                        tracing::info!(channel = %self.channel, "redis subscription restored");
                    }
                    backoff = BACKOFF_FIRST;
                    if !self.forward(pubsub, &events).await {
                        return;
                    }
                    tracing::warn!(channel = %self.channel, "redis subscription lost; reconnecting");
                    outage_logged = true;
                }
                failure => {
                    self.metrics.observe_redis("subscribe", attempt.elapsed(), false);
                    if !outage_logged {
                        let error = failure.map_or_else(
                            |_| "timed out".to_owned(),
                            |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                        );
                        tracing::warn!(channel = %self.channel, %error, "cannot subscribe to redis; retrying with backoff");
                        outage_logged = true;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = events.closed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_CAP);
        }
    }

    /// Forwards announcements until the connection breaks (`true`) or nobody listens (`false`).
    async fn forward(&self, pubsub: redis::aio::PubSub, events: &mpsc::Sender<BackendEvent>) -> bool {
        if events.send(BackendEvent::Subscribed).await.is_err() {
            return false;
        }
        let mut garbage_logged = false;
        let mut messages = pubsub.into_on_message();
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = events.closed() => return false,
            };
            let Some(message) = message else {
                return events.send(BackendEvent::Unsubscribed).await.is_ok();
            };
            let payload: Vec<u8> = message.get_payload_bytes().to_vec();
            match serde_json::from_slice::<Announcement>(&payload) {
                Ok(a) => {
                    let snapshot = Snapshot { total: a.users, version: a.v };
                    if events.send(BackendEvent::Announced(snapshot)).await.is_err() {
                        return false;
                    }
                }
                Err(error) => {
                    self.metrics.bad_announcements.inc();
                    if !garbage_logged {
                        let sample = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
                        tracing::warn!(channel = %self.channel, %error, %sample, "ignoring a message that is not an announcement (further ones are only counted)");
                        garbage_logged = true;
                    }
                }
            }
        }
    }
}
