//! Webhooks: every room event is produced once, in the backend step that caused it (see
//! `presence/redis/lua/prelude.lua`), into a per-group log. Here one task per group delivers it:
//! the node that holds the group's lease reads the log in order, POSTs batches signed with HMAC,
//! retries with exponential backoff and jitter, acknowledges on 2xx, and dead-letters after
//! `webhook_max_attempts`. A node that dies with a batch in flight loses the lease; the next
//! holder claims the batch and sends it again (at least once; receivers drop duplicates by `id`).
//! Delivery has its own tasks and connections: a slow receiver never slows the counts.

pub mod signature;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::metrics::Metrics;
use crate::presence::{DeadEvent, EventLog, WebhookEvent};

/// Events in one POST at most.
const MAX_BATCH: usize = 500;
/// How often an idle group is looked at (and its lease kept).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// A group's lease: taken over this long after its holder stops renewing it.
const LEASE: Duration = Duration::from_secs(5);

/// Delivery settings.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Where events are POSTed.
    pub url: String,
    /// The HMAC key of `Rollcall-Signature`.
    pub secret: Vec<u8>,
    /// After a hint, wait this long for more events before reading.
    pub batch: Duration,
    /// Attempts per batch before it is dead-lettered.
    pub max_attempts: u32,
    /// Deadline of one POST.
    pub timeout: Duration,
}

/// Wakes a group's delivery task when events may be waiting (produced here, or announced).
#[derive(Debug)]
pub struct Hints(Vec<Notify>);

impl Hints {
    /// One per group.
    pub fn new(groups: u16) -> Arc<Self> {
        Arc::new(Self((0..groups).map(|_| Notify::new()).collect()))
    }

    /// Events may be waiting in `group`.
    pub fn hint(&self, group: u16) {
        if let Some(notify) = self.0.get(usize::from(group)) {
            notify.notify_one();
        }
    }
}

/// The delivery side of one node.
pub struct Deliverer {
    /// The event logs.
    pub log: Arc<dyn EventLog>,
    /// This node (its lease and consumer name).
    pub node: Arc<str>,
    /// Room groups.
    pub groups: u16,
    /// Where and how.
    pub delivery: Delivery,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Wake-ups.
    pub hints: Arc<Hints>,
}

impl Deliverer {
    /// Runs one task per group until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let client = match reqwest::Client::builder().timeout(self.delivery.timeout).build() {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "cannot build the webhook HTTP client; webhooks are off");
                return;
            }
        };
        let this = Arc::new(self);
        let tasks: Vec<_> = (0..this.groups)
            .map(|group| tokio::spawn(this.clone().group_loop(group, client.clone(), stop.clone())))
            .collect();
        for task in tasks {
            let _ = task.await;
        }
    }

    async fn group_loop(self: Arc<Self>, group: u16, client: reqwest::Client, stop: CancellationToken) {
        let notify = &self.hints.0[usize::from(group)];
        loop {
            let hinted = tokio::select! {
                () = stop.cancelled() => return,
                () = notify.notified() => true,
                () = tokio::time::sleep(IDLE_POLL) => false,
            };
            if hinted {
                // Gather what the same burst produces into one batch.
                tokio::time::sleep(self.delivery.batch).await;
            }
            // The lease is renewed before every batch, not only when the group was idle: a
            // holder whose backlog never empties for longer than LEASE would otherwise lose it
            // while still sending, and the next holder would send the same group at once
            // (the batch in flight twice, and a room's events racing out of order).
            let mut held = false;
            while !stop.is_cancelled() && self.lease(group).await {
                held = true;
                match self.log.read(group, &self.node, MAX_BATCH).await {
                    Ok(batch) if batch.is_empty() => break,
                    Ok(batch) => {
                        if !self.deliver(group, &client, batch, &stop).await {
                            break;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, group, "cannot read webhook events");
                        break;
                    }
                }
            }
            if !held {
                continue;
            }
            if let Ok(backlog) = self.log.backlog(group).await {
                self.metrics.set_webhook_backlog(group, backlog);
            }
        }
    }

    async fn lease(&self, group: u16) -> bool {
        let ttl = u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX);
        self.log.hold_lease(group, &self.node, ttl).await.unwrap_or(false)
    }

    /// Sends one batch until a 2xx, the attempts run out, or the lease is lost (false: stop).
    async fn deliver(
        &self,
        group: u16,
        client: &reqwest::Client,
        batch: Vec<WebhookEvent>,
        stop: &CancellationToken,
    ) -> bool {
        let body = match serde_json::to_vec(&serde_json::json!({ "events": &batch })) {
            Ok(body) => body,
            Err(_) => return false,
        };
        let ids: Vec<String> = batch.iter().map(|e| e.id.clone()).collect();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        let mut last_error = String::new();
        for attempt in 1..=self.delivery.max_attempts {
            match self.post(client, &body).await {
                Ok(()) => {
                    let _ = self.log.acknowledge(group, &ids).await;
                    self.metrics.webhook_delivered(&batch);
                    return true;
                }
                Err(error) => last_error = error,
            }
            if attempt == self.delivery.max_attempts {
                break;
            }
            self.metrics.webhook_retries.inc();
            let wait = jitter(backoff.next_delay());
            tokio::select! {
                () = stop.cancelled() => return false,
                () = tokio::time::sleep(wait) => {}
            }
            if !self.lease(group).await {
                // Another node holds the group now; it sends this batch again.
                return false;
            }
        }
        tracing::warn!(group, events = batch.len(), error = %last_error, "webhook batch dead-lettered after the last attempt");
        let dead_at = now_ms();
        let dead: Vec<DeadEvent> = batch
            .into_iter()
            .map(|event| DeadEvent {
                event,
                attempts: self.delivery.max_attempts,
                error: last_error.clone(),
                dead_at,
            })
            .collect();
        self.metrics.webhook_dead_lettered.inc_by(dead.len() as u64);
        self.log.dead_letter(group, &dead).await.is_ok()
    }

    async fn post(&self, client: &reqwest::Client, body: &[u8]) -> Result<(), String> {
        let t = now_ms() / 1000;
        let started = Instant::now();
        let response = client
            .post(&self.delivery.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, signature::sign(&self.delivery.secret, t, body))
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| format!("no answer: {e}"))?;
        let status = response.status();
        tracing::debug!(%status, took = ?started.elapsed(), "webhook POST");
        if status.is_success() { Ok(()) } else { Err(format!("HTTP {status}")) }
    }
}

fn now_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// `delay` ± 20 %, so many nodes' retries do not hit a recovering receiver at once.
fn jitter(delay: Duration) -> Duration {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let factor = 0.8 + f64::from(nanos % 1000) / 1000.0 * 0.4;
    delay.mul_f64(factor)
}
