//! Cluster mode: the counts live in Redis; Lua scripts change them and announce them atomically.

mod cluster;
mod codec;
mod connect;
mod events;
mod scripts;
mod subscriber;

use std::collections::{BTreeMap, BTreeSet};
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
    /// Where Redis is and how to reach it (one server, Sentinel or a cluster; TLS; ACL user).
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

/// The Redis backend: a small pool for scripts (on a cluster: one cluster connection), a
/// dedicated connection for pub/sub.
pub struct RedisBackend {
    connector: Arc<Connector>,
    pool: ScriptPool,
    scripts: Scripts,
    names: Names,
    options: RedisOptions,
    metrics: Arc<Metrics>,
    known_groups: events::KnownGroups,
    /// On a cluster: the groups the last global step that landed listed as held by this node.
    /// A flush that writes a room of another group runs its global step first (see `flush`).
    confirmed_held: std::sync::Mutex<BTreeSet<u16>>,
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
            confirmed_held: std::sync::Mutex::new(BTreeSet::new()),
        })
    }

    /// Whether the backend is a Redis Cluster: one step per slot, sharded channels.
    fn sharded(&self) -> bool {
        self.connector.sharded()
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
        if let Err(error) = &result {
            self.pool.failed(error);
        }
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

    /// One `flush.lua` step (on a cluster: the part of a flush in one slot).
    async fn flush_step(&self, payload: &Payload<'_>) -> Result<String, BackendError> {
        let keys = payload.route_keys(&self.names);
        let json = serde_json::to_string(payload).map_err(|e| BackendError::Reply(e.to_string()))?;
        self.eval("flush", &self.scripts.flush, &keys, &[json]).await
    }

    fn ttl_ms(&self) -> u64 {
        u64::try_from(self.options.node_ttl.as_millis()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl PresenceBackend for RedisBackend {
    async fn flush(&self, flush: &Flush) -> Result<FlushReply, BackendError> {
        let rooms = self.options.rooms;
        let payload = Payload::new(flush, &self.names, &rooms, self.ttl_ms(), self.sharded());
        if !self.sharded() {
            let reply = self.flush_step(&payload).await?;
            return codec::flush_reply(&[reply]).map_err(BackendError::Reply);
        }
        // A cluster: one step per slot. The global step records the groups this node holds (so
        // a reap finds them); when this flush writes a room of a group not recorded yet, that
        // record lands first. Otherwise every step goes at once.
        let (global, groups) = payload.into_parts();
        let written: BTreeSet<u16> = flush.rooms.iter().map(|r| group_of(&r.room, rooms.groups)).collect();
        let recorded = self.confirmed_held.lock().map(|held| written.is_subset(&held)).unwrap_or(false);
        let group_steps = futures_util::future::try_join_all(groups.iter().map(|part| self.flush_step(part)));
        let (global_reply, mut replies) = if recorded {
            tokio::try_join!(self.flush_step(&global), group_steps)?
        } else {
            let global_reply = self.flush_step(&global).await?;
            (global_reply, group_steps.await?)
        };
        if let Ok(mut held) = self.confirmed_held.lock() {
            *held = flush.groups_held.iter().copied().chain(written).collect();
        }
        replies.insert(0, global_reply);
        codec::flush_reply(&replies).map_err(BackendError::Reply)
    }

    async fn deregister(&self, node: &str, incarnation: u64, groups: &[u16]) -> Result<(), BackendError> {
        let payload = |global: bool, groups: &[u16]| {
            let mut payload = serde_json::json!({
                "node": node,
                "inc": incarnation,
                "cap": self.options.rooms.max_members_listed,
                "ev": self.options.rooms.events.map(codec::events_json),
                "sharded": self.sharded(),
                "groups": groups.iter().map(|&g| serde_json::json!({ "tag": self.names.group_tag(g), "g": g })).collect::<Vec<_>>(),
            });
            if global {
                payload["global"] = serde_json::json!({ "tag": self.names.global_tag() });
            }
            payload.to_string()
        };
        let step = async |payload: String, keys: Vec<String>| {
            let _: String = self.eval("deregister", &self.scripts.deregister, &keys, &[payload]).await?;
            Ok::<_, BackendError>(())
        };
        if !self.sharded() {
            let mut keys = vec![self.names.global_route()];
            keys.extend(groups.iter().map(|&g| self.names.group_route(g)));
            return step(payload(true, groups), keys).await;
        }
        // A cluster: the room shares go first (each group in its slot, at once); only then is
        // the node removed from the global count, so a failed group step leaves the node to
        // be reaped, rooms included, instead of leaving its room shares behind.
        futures_util::future::try_join_all(
            groups.iter().map(|&g| step(payload(false, &[g]), vec![self.names.group_route(g)])),
        )
        .await?;
        step(payload(true, &[]), vec![self.names.global_route()]).await
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
        // One pipeline; on a cluster one per group (a pipeline stays in one slot), at once.
        let mut batches: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (i, room) in rooms.iter().enumerate() {
            let batch = if self.sharded() { group_of(room, groups) } else { 0 };
            batches.entry(batch).or_default().push(i);
        }
        let read = async |indexes: &Vec<usize>| {
            let keys: Vec<String> = indexes
                .iter()
                .map(|&i| self.names.room_key(group_of(&rooms[i], groups), rooms[i].as_str()))
                .collect();
            self.with_conn("room_counts", async |conn| {
                let mut pipe = redis::pipe();
                for key in &keys {
                    pipe.cmd("HMGET").arg(key).arg("c").arg("u");
                }
                Ok(pipe.query_async::<Vec<(Option<i64>, Option<i64>)>>(conn).await?)
            })
            .await
        };
        let replies = futures_util::future::try_join_all(batches.values().map(read)).await?;
        let mut counts = vec![Counts::default(); rooms.len()];
        for (indexes, replies) in batches.values().zip(replies) {
            for (&i, (c, u)) in indexes.iter().zip(replies) {
                counts[i] = Counts { connections: c.unwrap_or(0), users: u.unwrap_or(0) };
            }
        }
        Ok(counts)
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
