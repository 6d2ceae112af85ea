//! Cluster mode: the count lives in Redis; Lua scripts change it and announce it atomically.

mod connect;
mod scripts;
mod subscriber;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::FromRedisValue;
use tokio::sync::mpsc;

use self::connect::{Connector, ScriptPool};
use self::scripts::Scripts;
use self::subscriber::Subscriber;
use super::{BackendError, BackendEvent, NodeInfo, PresenceBackend, ShareWrite, Snapshot};
use crate::metrics::Metrics;

/// How to reach Redis and how this cluster's keys are named.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Where Redis is and how to reach it (one server or Sentinel; TLS; ACL user).
    pub target: crate::config::RedisTarget,
    /// Prefix of every key and channel (the hash tag of all of them).
    pub prefix: String,
    /// Deadline of one Redis operation.
    pub timeout: Duration,
    /// A node whose heartbeat is older than this is dead.
    pub node_ttl: Duration,
}

/// The Redis backend: a small pool for scripts, a dedicated connection for pub/sub.
pub struct RedisBackend {
    connector: Arc<Connector>,
    pool: ScriptPool,
    scripts: Scripts,
    keys: [String; 5],
    channel: String,
    options: RedisOptions,
    metrics: Arc<Metrics>,
}

impl RedisBackend {
    /// Builds the pool; connects lazily, so a node starts even while Redis is down.
    pub fn new(options: RedisOptions, metrics: Arc<Metrics>) -> Result<Self, BackendError> {
        let connector = Arc::new(Connector::new(&options.target, options.timeout)?);
        let pool = connector.script_pool(4);
        Ok(Self {
            connector,
            pool,
            scripts: Scripts::new(),
            keys: scripts::global_keys(&options.prefix),
            channel: scripts::updates_channel(&options.prefix),
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
}

#[async_trait]
impl PresenceBackend for RedisBackend {
    async fn write_share(&self, node: &str, share: i64, floor: u64) -> Result<ShareWrite, BackendError> {
        let ttl_ms = self.options.node_ttl.as_millis().to_string();
        let args = [node.to_owned(), share.to_string(), ttl_ms, floor.to_string(), self.channel.clone()];
        let reply: Vec<redis::Value> = self.run("write_share", &self.scripts.write_share, &args).await?;
        parse_share_write(&reply, self.options.node_ttl)
    }

    async fn deregister(&self, node: &str, floor: u64) -> Result<Snapshot, BackendError> {
        let args = [node.to_owned(), floor.to_string(), self.channel.clone()];
        let (total, v): (i64, i64) = self.run("deregister", &self.scripts.deregister, &args).await?;
        Ok(Snapshot { total, version: version(v)? })
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        let subscriber = Subscriber {
            connector: self.connector.clone(),
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

fn version(value: i64) -> Result<u64, BackendError> {
    u64::try_from(value).map_err(|_| BackendError::Reply(format!("negative version {value}")))
}

/// `{total, version, restored, reaped, now, id, share, deadline, ...}` from `write_share.lua`.
fn parse_share_write(reply: &[redis::Value], ttl: Duration) -> Result<ShareWrite, BackendError> {
    let bad = |what: &str| BackendError::Reply(format!("write_share: {what}"));
    let int = |index: usize, what: &str| -> Result<i64, BackendError> {
        let value = reply.get(index).ok_or_else(|| bad(what))?;
        i64::from_redis_value(value.clone()).map_err(|_| bad(what))
    };
    let snapshot = Snapshot { total: int(0, "total")?, version: version(int(1, "version")?)? };
    let restored = int(2, "restored")? == 1;
    let reaped = u32::try_from(int(3, "reaped")?).map_err(|_| bad("reaped"))?;
    let now = int(4, "clock")?;
    let ttl_ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
    let nodes = reply[5..]
        .chunks_exact(3)
        .map(|entry| {
            let id = String::from_redis_value(entry[0].clone()).map_err(|_| bad("node id"))?;
            let users = i64::from_redis_value(entry[1].clone()).map_err(|_| bad("share"))?;
            let deadline = i64::from_redis_value(entry[2].clone()).map_err(|_| bad("deadline"))?;
            let age = (now - (deadline - ttl_ms)).max(0);
            Ok(NodeInfo { id, users, heartbeat_age_ms: age.unsigned_abs() })
        })
        .collect::<Result<_, BackendError>>()?;
    Ok(ShareWrite { snapshot, restored, reaped, nodes })
}
