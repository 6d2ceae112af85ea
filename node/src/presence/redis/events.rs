//! [`EventLog`] over Redis streams: one stream per room group (`{P:gN}:events`), read by the
//! consumer group `rollcall`, one consumer per node; the node holding the group's lease delivers.
//! Acknowledged events are deleted, so the stream holds exactly what is not delivered yet.

use std::collections::HashSet;
use std::sync::Mutex;

use async_trait::async_trait;
use redis::{FromRedisValue, Value};

use super::RedisBackend;
use crate::presence::{BackendError, DeadEvent, EventLog, WebhookEvent};

/// The consumer group every node reads as.
const CONSUMER_GROUP: &str = "rollcall";
/// Dead-lettered events kept per group.
const DEAD_KEPT: i64 = 10_000;

/// Groups whose consumer group this process has made sure exists.
#[derive(Default)]
pub(super) struct KnownGroups(Mutex<HashSet<u16>>);

impl KnownGroups {
    fn has(&self, group: u16) -> bool {
        self.0.lock().map(|g| g.contains(&group)).unwrap_or(false)
    }

    fn set(&self, group: u16, known: bool) {
        if let Ok(mut groups) = self.0.lock() {
            if known {
                groups.insert(group)
            } else {
                groups.remove(&group)
            };
        }
    }
}

impl RedisBackend {
    /// Creates the stream and its consumer group if they are missing (after a restart, too).
    async fn ensure_group(&self, group: u16) -> Result<(), BackendError> {
        if self.known_groups.has(group) {
            return Ok(());
        }
        let stream = self.names.events(group);
        let created: Result<(), BackendError> = self
            .with_conn("webhook_group", async |conn| {
                let reply: redis::RedisResult<()> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&stream)
                    .arg(CONSUMER_GROUP)
                    .arg("0")
                    .arg("MKSTREAM")
                    .query_async(conn)
                    .await;
                match reply {
                    Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
                    other => Ok(other?),
                }
            })
            .await;
        created?;
        self.known_groups.set(group, true);
        Ok(())
    }

    async fn claim_and_read(
        &self,
        group: u16,
        node: &str,
        max: usize,
    ) -> Result<Vec<WebhookEvent>, BackendError> {
        let stream = self.names.events(group);
        let (claimed, new): (Value, Value) = self
            .with_conn("webhook_read", async |conn| {
                // Everything pending, whoever read it: the lease says this node delivers now.
                let claimed: Value = redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(CONSUMER_GROUP)
                    .arg(node)
                    .arg(0)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(max)
                    .query_async(conn)
                    .await?;
                let new: Value = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(CONSUMER_GROUP)
                    .arg(node)
                    .arg("COUNT")
                    .arg(max)
                    .arg("STREAMS")
                    .arg(&stream)
                    .arg(">")
                    .query_async(conn)
                    .await?;
                Ok((claimed, new))
            })
            .await?;
        let mut events = claimed_entries(group, claimed)?;
        events.extend(new_entries(group, new)?);
        events.truncate(max);
        Ok(events)
    }
}

/// XAUTOCLAIM's reply: `[cursor, [[id, [field, value...]]...], [deleted ids]]`.
fn claimed_entries(group: u16, reply: Value) -> Result<Vec<WebhookEvent>, BackendError> {
    let parts: Vec<Value> = Vec::from_redis_value(reply)?;
    parts.into_iter().nth(1).map_or(Ok(Vec::new()), |entries| entries_of(group, entries))
}

/// XREADGROUP's reply: nil, or `[[stream, [[id, [field, value...]]...]]]`.
fn new_entries(group: u16, reply: Value) -> Result<Vec<WebhookEvent>, BackendError> {
    if matches!(reply, Value::Nil) {
        return Ok(Vec::new());
    }
    let streams: Vec<(String, Value)> = Vec::from_redis_value(reply)?;
    streams.into_iter().next().map_or(Ok(Vec::new()), |(_, entries)| entries_of(group, entries))
}

fn entries_of(group: u16, entries: Value) -> Result<Vec<WebhookEvent>, BackendError> {
    let entries: Vec<(String, Vec<(String, String)>)> = Vec::from_redis_value(entries)?;
    entries
        .into_iter()
        .map(|(id, fields)| {
            let body = fields.into_iter().find(|(f, _)| f == "e").map(|(_, v)| v).unwrap_or_default();
            let mut event: WebhookEvent = serde_json::from_str(&with_id(&body))
                .map_err(|e| BackendError::Reply(format!("webhook event {id}: {e}")))?;
            event.id = format!("g{group}-{id}");
            Ok(event)
        })
        .collect()
}

/// The stored body has no `id` (it is the stream entry's); give it an empty one to parse.
fn with_id(body: &str) -> String {
    match body.strip_prefix('{') {
        Some(rest) => format!("{{\"id\":\"\",{rest}"),
        None => body.to_owned(),
    }
}

/// The stream entry id of an event id `g<N>-<entry id>`.
fn entry_id(id: &str) -> Option<&str> {
    id.split_once('-').map(|(_, entry)| entry)
}

#[async_trait]
impl EventLog for RedisBackend {
    async fn hold_lease(&self, group: u16, node: &str, ttl_ms: u64) -> Result<bool, BackendError> {
        let keys = [self.names.lease(group)];
        let held: i64 = self
            .eval("webhook_lease", &self.scripts.lease, &keys, &[node.to_owned(), ttl_ms.to_string()])
            .await?;
        Ok(held == 1)
    }

    async fn read(&self, group: u16, node: &str, max: usize) -> Result<Vec<WebhookEvent>, BackendError> {
        self.ensure_group(group).await?;
        match self.claim_and_read(group, node, max).await {
            // The stream was lost (Redis restarted empty): make the group again next time.
            Err(BackendError::Redis(e)) if e.code() == Some("NOGROUP") => {
                self.known_groups.set(group, false);
                Ok(Vec::new())
            }
            other => other,
        }
    }

    async fn acknowledge(&self, group: u16, ids: &[String]) -> Result<(), BackendError> {
        let entries: Vec<&str> = ids.iter().filter_map(|id| entry_id(id)).collect();
        if entries.is_empty() {
            return Ok(());
        }
        let stream = self.names.events(group);
        self.with_conn("webhook_ack", async |conn| {
            let mut pipe = redis::pipe();
            pipe.cmd("XACK").arg(&stream).arg(CONSUMER_GROUP).arg(&entries).ignore();
            pipe.cmd("XDEL").arg(&stream).arg(&entries).ignore();
            Ok(pipe.query_async::<()>(conn).await?)
        })
        .await
    }

    async fn dead_letter(&self, group: u16, dead: &[DeadEvent]) -> Result<(), BackendError> {
        let bodies: Vec<String> = dead.iter().filter_map(|d| serde_json::to_string(d).ok()).collect();
        if !bodies.is_empty() {
            let key = self.names.dead(group);
            self.with_conn("webhook_dead_letter", async |conn| {
                let mut pipe = redis::pipe();
                pipe.cmd("LPUSH").arg(&key).arg(&bodies).ignore();
                pipe.cmd("LTRIM").arg(&key).arg(0).arg(DEAD_KEPT - 1).ignore();
                Ok(pipe.query_async::<()>(conn).await?)
            })
            .await?;
        }
        let ids: Vec<String> = dead.iter().map(|d| d.event.id.clone()).collect();
        self.acknowledge(group, &ids).await
    }

    async fn dead(&self, groups: u16, limit: usize) -> Result<Vec<DeadEvent>, BackendError> {
        let mut all = Vec::new();
        for group in 0..groups {
            let key = self.names.dead(group);
            let end = i64::try_from(limit).unwrap_or(i64::MAX).saturating_sub(1);
            let bodies: Vec<String> = self
                .with_conn("webhook_dead", async |conn| {
                    Ok(redis::cmd("LRANGE").arg(&key).arg(0).arg(end).query_async(conn).await?)
                })
                .await?;
            all.extend(bodies.iter().filter_map(|b| serde_json::from_str::<DeadEvent>(b).ok()));
        }
        all.sort_by_key(|dead| std::cmp::Reverse(dead.dead_at));
        all.truncate(limit);
        Ok(all)
    }

    async fn backlog(&self, group: u16) -> Result<u64, BackendError> {
        let stream = self.names.events(group);
        self.with_conn("webhook_backlog", async |conn| {
            Ok(redis::cmd("XLEN").arg(&stream).query_async(conn).await?)
        })
        .await
    }
}
