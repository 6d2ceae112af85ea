//! The pub/sub side of the Redis backend: one dedicated connection to the global channel and every
//! room group's channel (on a cluster: sharded channels, each on its shard), re-established with
//! capped backoff. Every (re)subscription is reported,
//! because anything may have been missed while unsubscribed and the coordinator must re-read.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::codec::Published;
use super::connect::{Connector, Subscription};
use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::presence::{Announcement, BackendEvent, Counts, Snapshot};

/// Forwards announcements from Redis channels to the coordinator.
pub(super) struct Subscriber {
    pub connector: Arc<Connector>,
    pub channels: Vec<String>,
    pub timeout: Duration,
    pub metrics: Arc<Metrics>,
}

impl Subscriber {
    /// Runs until the receiver of `events` is dropped.
    pub async fn run(self, events: mpsc::Sender<BackendEvent>) {
        let mut backoff = Backoff::for_backend();
        let mut outage_logged = false;
        while !events.is_closed() {
            let connect = self.connector.subscribe(&self.channels);
            let attempt = Instant::now();
            match tokio::time::timeout(self.timeout, connect).await {
                Ok(Ok(subscription)) => {
                    if outage_logged {
                        tracing::info!("redis subscription restored");
                    }
                    backoff.reset();
                    if !self.forward(subscription, &events).await {
                        return;
                    }
                    tracing::warn!("redis subscription lost; reconnecting");
                    outage_logged = true;
                }
                failure => {
                    self.metrics.observe_redis("subscribe", attempt.elapsed(), false);
                    if !outage_logged {
                        let error = failure.map_or_else(
                            |_| "timed out".to_owned(),
                            |r| r.err().map(|e| e.to_string()).unwrap_or_default(),
                        );
                        tracing::warn!(%error, "cannot subscribe to redis; retrying with backoff");
                        outage_logged = true;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff.next_delay()) => {}
                () = events.closed() => return,
            }
        }
    }

    /// Forwards announcements until the connection breaks (`true`) or nobody listens (`false`).
    async fn forward(&self, mut messages: Subscription, events: &mpsc::Sender<BackendEvent>) -> bool {
        if events.send(BackendEvent::Subscribed).await.is_err() {
            return false;
        }
        let mut garbage_logged = false;
        loop {
            let message = tokio::select! {
                message = messages.next() => message,
                () = events.closed() => return false,
            };
            let Some(message) = message else {
                return events.send(BackendEvent::Unsubscribed).await.is_ok();
            };
            let payload = message.get_payload_bytes();
            match parse(payload) {
                Ok((announcement, at)) => {
                    if let Some(at) = at {
                        self.metrics.announcement_arrived(at);
                    }
                    if events.send(BackendEvent::Announced(announcement)).await.is_err() {
                        return false;
                    }
                }
                Err(error) => {
                    self.metrics.bad_announcements.inc();
                    if !garbage_logged {
                        let sample = String::from_utf8_lossy(&payload[..payload.len().min(80)]).into_owned();
                        tracing::warn!(channel = %message.get_channel_name(), %error, %sample, "ignoring a message that is not an announcement (further ones are only counted)");
                        garbage_logged = true;
                    }
                }
            }
        }
    }
}

/// One channel message as an [`Announcement`], with when its script ran (Unix ms, Redis clock).
fn parse(payload: &[u8]) -> Result<(Announcement, Option<u64>), String> {
    match serde_json::from_slice::<Published>(payload).map_err(|e| e.to_string())? {
        Published::Global { v, c, u, reaped, at } => Ok((
            Announcement::Global {
                snapshot: Snapshot { counts: Counts { connections: c, users: u }, version: v },
                reaped,
            },
            at,
        )),
        Published::Rooms { g, v, rooms, reaped, at } => Ok((
            Announcement::Rooms {
                group: g,
                version: v,
                rooms: rooms.into_iter().map(|r| r.update(v)).collect::<Result<_, _>>()?,
                reaped,
            },
            at,
        )),
    }
}
