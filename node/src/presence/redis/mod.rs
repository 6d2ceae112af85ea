//! Cluster mode: the counts live in Redis; Lua scripts change them and announce them atomically.

mod codec;
mod connect;
mod events;
mod scripts;
mod subscriber;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::FromRedisValue;
use tokio::sync::mpsc;

use self::codec::Payload;
use self::connect::{Connector, ScriptConnection, ScriptPool};
use self::scripts::{Names, Scripts};
use self::subscriber::Subscriber;
use super::{
    BackendError, BackendEvent, Counts, Flush, FlushReply, MemberCount, Page, PresenceBackend, RoomCount,
    RoomPolicy, group_of,
};
use crate::count::RoomName;
use crate::metrics::Metrics;

/// How to reach Redis and how this cluster's keys are named.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// Where Redis is and how to reach it (one server or Sentinel; TLS; ACL user).
    pub target: crate::config::RedisTarget,
    /// Prefix of every key and channel (inside the hash tag of all of them).
    pub prefix: String,
    /// Deadline of one Redis operation.
    pub timeout: Duration,
    /// A node whose heartbeat is older than this is dead.
    pub node_ttl: Duration,
    /// Room groups and member listing.
    pub rooms: RoomPolicy,
}

/// The Redis backend: a small pool for scripts, a dedicated connection for pub/sub.
pub struct RedisBackend {
    connector: Arc<Connector>,
    pool: ScriptPool,
    scripts: Scripts,
    names: Names,
    options: RedisOptions,
    metrics: Arc<Metrics>,
    known_groups: events::KnownGroups,
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
            names: Names::new(&options.prefix),
            options,
            metrics,
            known_groups: events::KnownGroups::default(),
        })
    }

    /// Runs `call` on a pooled connection under the command deadline, recording latency and failure.
    async fn with_conn<T, F>(&self, operation: &'static str, call: F) -> Result<T, BackendError>
    where
        F: AsyncFnOnce(&mut ScriptConnection) -> Result<T, BackendError>,
    {
        let started = Instant::now();
        let result = tokio::time::timeout(self.options.timeout, async {
            let mut conn = self.pool.get().await.map_err(|e| BackendError::Pool(e.to_string()))?;
            call(&mut conn).await
        })
        .await
        .unwrap_or(Err(BackendError::Timeout(self.options.timeout)));
        self.metrics.observe_redis(operation, started.elapsed(), result.is_ok());
        result
    }

    /// EVALSHA (EVAL after NOSCRIPT) of `script` with `keys` and `args`.
    async fn eval<T: FromRedisValue, A: redis::ToRedisArgs + Sync>(
        &self,
        operation: &'static str,
        script: &redis::Script,
        keys: &[String],
        args: &[A],
    ) -> Result<T, BackendError> {
        self.with_conn(operation, async |conn| {
            let mut invocation = script.prepare_invoke();
            for key in keys {
                invocation.key(key);
            }
            for arg in args {
                invocation.arg(arg);
            }
            Ok(invocation.invoke_async(conn).await?)
        })
        .await
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.options.node_ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl PresenceBackend for RedisBackend {
    async fn flush(&self, flush: &Flush) -> Result<FlushReply, BackendError> {
        let rooms = self.options.rooms;
        let payload = Payload::new(flush, &self.names, &rooms, self.ttl_ms());
        let keys = payload.route_keys(&self.names);
        let json = serde_json::to_string(&payload).map_err(|e| BackendError::Reply(e.to_string()))?;
        let reply: String = self.eval("flush", &self.scripts.flush, &keys, &[json]).await?;
        codec::flush_reply(&reply).map_err(BackendError::Reply)
    }

    async fn deregister(&self, node: &str, incarnation: u64, groups: &[u16]) -> Result<(), BackendError> {
        let payload = serde_json::json!({
            "node": node,
            "inc": incarnation,
            "cap": self.options.rooms.max_members_listed,
            "ev": self.options.rooms.events.map(codec::events_json),
            "global": { "tag": self.names.global_tag() },
            "groups": groups.iter().map(|&g| serde_json::json!({ "tag": self.names.group_tag(g), "g": g })).collect::<Vec<_>>(),
        });
        let mut keys = vec![self.names.global_route()];
        keys.extend(groups.iter().map(|&g| self.names.group_route(g)));
        let _: String =
            self.eval("deregister", &self.scripts.deregister, &keys, &[payload.to_string()]).await?;
        Ok(())
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        let mut channels = vec![self.names.global_channel()];
        channels.extend((0..self.options.rooms.groups).map(|g| self.names.group_channel(g)));
        let subscriber = Subscriber {
            connector: self.connector.clone(),
            channels,
            timeout: self.options.timeout,
            metrics: self.metrics.clone(),
        };
        tokio::spawn(subscriber.run(events));
    }

    async fn room_counts(&self, rooms: &[RoomName]) -> Result<Vec<Counts>, BackendError> {
        let groups = self.options.rooms.groups;
        let keys: Vec<String> =
            rooms.iter().map(|room| self.names.room_key(group_of(room, groups), room.as_str())).collect();
        let replies: Vec<(Option<i64>, Option<i64>)> = self
            .with_conn("room_counts", async |conn| {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("HMGET").arg(key).arg("c").arg("u");
                }
                Ok(pipe.query_async(conn).await?)
            })
            .await?;
        Ok(replies
            .into_iter()
            .map(|(c, u)| Counts { connections: c.unwrap_or(0), users: u.unwrap_or(0) })
            .collect())
    }

    async fn list_rooms(
        &self,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RoomCount>, BackendError> {
        let (low, high) = lex_range(prefix, cursor);
        let mut rooms = Vec::new();
        for g in 0..self.options.rooms.groups {
            let args = [
                self.names.group_tag(g).into_bytes(),
                low.clone(),
                high.clone(),
                (limit + 1).to_string().into_bytes(),
            ];
            let keys = [self.names.group_route(g)];
            let flat: Vec<redis::Value> =
                self.eval("list_rooms", &self.scripts.list_rooms, &keys, &args).await?;
            for entry in flat.chunks_exact(3) {
                let name = String::from_redis_value(entry[0].clone())?;
                let room = RoomName::new(&name).map_err(|e| BackendError::Reply(e.to_string()))?;
                let connections = i64::from_redis_value(entry[1].clone())?;
                let users = i64::from_redis_value(entry[2].clone())?;
                rooms.push(RoomCount { room, counts: Counts { connections, users } });
            }
        }
        rooms.sort_by(|a, b| a.room.as_str().as_bytes().cmp(b.room.as_str().as_bytes()));
        Ok(super::memory::page(rooms, limit, |r| r.room.to_string()))
    }

    async fn members(
        &self,
        room: &RoomName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<MemberCount>, BackendError> {
        let g = group_of(room, self.options.rooms.groups);
        let low = cursor.map_or_else(|| "-".to_owned(), |c| format!("({c}"));
        let args = [self.names.group_tag(g), room.to_string(), low, (limit + 1).to_string()];
        let flat: Vec<redis::Value> =
            self.eval("members", &self.scripts.members, &[self.names.group_route(g)], &args).await?;
        let mut members = Vec::new();
        for entry in flat.chunks_exact(3) {
            let user = String::from_redis_value(entry[0].clone())?;
            let connections = i64::from_redis_value(entry[1].clone())?;
            let info = Option::<String>::from_redis_value(entry[2].clone()).ok().flatten();
            members.push(MemberCount { user: user.into(), info: info.map(Into::into), connections });
        }
        Ok(super::memory::page(members, limit, |m| m.user.to_string()))
    }

    async fn user_connections(&self, user: &str) -> Result<i64, BackendError> {
        let key = format!("{}:m", self.names.global_tag());
        let count: Option<i64> = self
            .with_conn("user_connections", async |conn| {
                Ok(redis::cmd("HGET").arg(&key).arg(user).query_async(conn).await?)
            })
            .await?;
        Ok(count.unwrap_or(0))
    }

    fn mode(&self) -> &'static str {
        "redis"
    }
}

/// The ZRANGEBYLEX bounds (bytes) of names starting with `prefix`, after `cursor`.
fn lex_range(prefix: &str, cursor: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    let low = match cursor {
        Some(c) if c >= prefix => format!("({c}"),
        _ if prefix.is_empty() => "-".to_owned(),
        _ => format!("[{prefix}"),
    };
    // 0xFF never occurs in UTF-8, so it sorts after every name that starts with `prefix`.
    let high = if prefix.is_empty() { b"+".to_vec() } else { [b"[", prefix.as_bytes(), &[0xff]].concat() };
    (low.into_bytes(), high)
}
