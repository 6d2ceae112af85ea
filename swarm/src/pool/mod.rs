//! A worker's clients: slots, spawning, stopping oldest first, and the counters over them;
//! their rooms in [`rooms`].

mod rooms;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use self::rooms::Rooms;
use super::client::{self, ClientCell, ClientEvent, ClientSpec};
use super::messages::{Status, Target, WorkerConfig, WorkerReport, now_us};

/// A client the pool is running.
struct Live {
    id: u64,
    cell: Arc<ClientCell>,
    stop: Option<oneshot::Sender<()>>,
    /// A room move was asked for and has not finished.
    moving: bool,
}

impl Live {
    /// Connected, and not told to leave.
    fn active(&self) -> bool {
        self.stop.is_some() && self.cell.connected.load(Ordering::Acquire)
    }
}

/// What one client event changed, for the phase bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A connect succeeded.
    Connected,
    /// A connect failed.
    Failed,
    /// A room move got both acks.
    Moved,
    /// A room move was refused or cut short.
    MoveFailed,
    /// A client the pool stopped has ended.
    Left,
    /// A connected client was dropped by the server or the network.
    Dropped,
}

/// The clients of one worker.
pub struct Pool {
    targets: Vec<Arc<Target>>,
    config: WorkerConfig,
    slots: Vec<Option<Live>>,
    free: Vec<usize>,
    /// Connected clients, oldest first: (slot, id).
    fifo: VecDeque<(usize, u64)>,
    next_id: u64,
    events: mpsc::UnboundedSender<ClientEvent>,
    /// Clients spawned and not yet connected or failed.
    pub connecting: u64,
    /// Clients told to leave that have not ended yet.
    pub closing: u64,
    /// Clients connected now (including those leaving).
    pub connected: u64,
    /// Room moves asked for and not finished.
    moving: u64,
    /// When the pool last changed the presence total (µs since the epoch).
    pub last_change_us: u64,
    /// Counters over the whole run (message counts of ended clients included).
    pub report: WorkerReport,
    /// The clients' rooms, when the run has rooms.
    rooms: Option<Rooms>,
}

impl Pool {
    /// A pool reporting its clients' events to `events`.
    pub fn new(config: WorkerConfig, events: mpsc::UnboundedSender<ClientEvent>) -> Self {
        let targets = config.targets.iter().cloned().map(Arc::new).collect();
        let rooms = config.rooms.clone().map(|plan| Rooms::new(plan, config.index));
        Self {
            targets,
            config,
            slots: Vec::new(),
            free: Vec::new(),
            fifo: VecDeque::new(),
            next_id: 0,
            events,
            connecting: 0,
            closing: 0,
            connected: 0,
            moving: 0,
            last_change_us: 0,
            report: WorkerReport::default(),
            rooms,
        }
    }

    /// Starts one client.
    pub fn spawn(&mut self) {
        let id = self.next_id;
        self.next_id += 1;
        let global = id * self.config.workers as u64 + self.config.index as u64;
        let Some(target) = self.targets.get(global as usize % self.targets.len().max(1)) else {
            return;
        };
        let ips = &self.config.source_ips;
        let source = (!ips.is_empty()).then(|| ips[id as usize % ips.len()]);
        let spec = ClientSpec {
            target: Arc::clone(target),
            source,
            timeout: Duration::from_millis(self.config.connect_timeout_ms),
            rooms: self.rooms.as_ref().map(Rooms::plan),
            token: self.config.jwt_secret.as_deref().map(|secret| user_token(secret, global)),
        };
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.slots.len() - 1
        });
        let cell = Arc::new(match &mut self.rooms {
            Some(rooms) => ClientCell::in_room(rooms.draw()),
            None => ClientCell::default(),
        });
        let (stop, stop_rx) = oneshot::channel();
        let events = self.events.clone();
        tokio::spawn(client::run(spec, slot, Arc::clone(&cell), stop_rx, events));
        self.slots[slot] = Some(Live { id, cell, stop: Some(stop), moving: false });
        self.connecting += 1;
        self.report.attempted += 1;
        if self.report.first_start_us == 0 {
            self.report.first_start_us = now_us();
        }
    }

    /// Tells the oldest connected client to leave; false when none is left.
    pub fn stop_oldest(&mut self) -> bool {
        while let Some((slot, id)) = self.fifo.pop_front() {
            let Some(live) = self.slots.get_mut(slot).and_then(Option::as_mut) else {
                continue;
            };
            if live.id != id {
                continue;
            }
            let Some(stop) = live.stop.take() else {
                continue;
            };
            let _ = stop.send(());
            self.closing += 1;
            self.last_change_us = now_us();
            if let Some(rooms) = &mut self.rooms {
                rooms.changed(live.cell.room.load(Ordering::Acquire), self.last_change_us);
            }
            return true;
        }
        false
    }

    /// Applies one client event to the counters.
    pub fn on_event(&mut self, event: ClientEvent) -> Option<Outcome> {
        match event {
            ClientEvent::Connected { slot, latency_us } => {
                let id = self.slots.get(slot).and_then(Option::as_ref)?.id;
                self.fifo.push_back((slot, id));
                self.connecting = self.connecting.saturating_sub(1);
                self.connected += 1;
                self.report.ok += 1;
                self.report.latency.record(latency_us);
                self.report.peak_connected = self.report.peak_connected.max(self.connected);
                self.last_change_us = now_us();
                self.report.last_ok_us = self.last_change_us;
                let room = self.slots[slot].as_ref().map(|live| live.cell.room.load(Ordering::Acquire));
                if let (Some(rooms), Some(room)) = (&mut self.rooms, room) {
                    rooms.changed(room, self.last_change_us);
                }
                Some(Outcome::Connected)
            }
            ClientEvent::Moved { slot, outcome } => self.on_moved(slot, outcome),
            ClientEvent::Ended { slot, was_connected, error } => self.on_ended(slot, was_connected, error),
        }
    }

    fn on_ended(&mut self, slot: usize, was_connected: bool, error: Option<String>) -> Option<Outcome> {
        let live = self.slots.get_mut(slot)?.take()?;
        self.free.push(slot);
        self.count_messages(&live.cell);
        let stopped = live.stop.is_none();
        if live.moving {
            self.moving = self.moving.saturating_sub(1);
            self.report.moves_failed += 1;
        }
        if !was_connected {
            self.connecting = self.connecting.saturating_sub(1);
            self.report.failed += 1;
            let kind = error.unwrap_or_else(|| "unknown".to_owned());
            *self.report.errors.entry(kind).or_insert(0) += 1;
            return Some(Outcome::Failed);
        }
        self.connected = self.connected.saturating_sub(1);
        if stopped {
            self.closing = self.closing.saturating_sub(1);
            return Some(Outcome::Left);
        }
        self.report.dropped += 1;
        if let Some(rooms) = &mut self.rooms {
            rooms.changed(live.cell.room.load(Ordering::Acquire), now_us());
        }
        let kind = error.unwrap_or_else(|| "dropped".to_owned());
        *self.report.errors.entry(kind).or_insert(0) += 1;
        Some(Outcome::Dropped)
    }

    /// How many connected clients last saw `truth`, and when the latest of them changed.
    pub fn status(&self, truth: Option<i64>) -> Status {
        let mut status = Status::default();
        for live in self.slots.iter().flatten() {
            if !live.active() {
                continue;
            }
            status.connected += 1;
            let last = live.cell.last_value.load(Ordering::Acquire);
            if last == client::NO_VALUE {
                status.without_value += 1;
            }
            if Some(last) == truth {
                status.matching += 1;
                let changed = live.cell.changed_at_us.load(Ordering::Acquire);
                status.latest_change_us = status.latest_change_us.max(changed);
            }
        }
        status
    }

    /// The run's counters, live clients' message counts included.
    pub fn final_report(&self) -> WorkerReport {
        let mut report = self.report.clone();
        for live in self.slots.iter().flatten() {
            add_messages(&mut report, &live.cell);
        }
        report
    }

    fn count_messages(&mut self, cell: &ClientCell) {
        add_messages(&mut self.report, cell);
    }
}

/// The HS256 token of client `global`: user `swarm-<global>`, valid for a day.
fn user_token(secret: &str, global: u64) -> String {
    let exp = now_us() / 1_000_000 + 86_400;
    let claims = serde_json::json!({ "sub": format!("swarm-{global}"), "exp": exp });
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
    // Signing a JSON object with an HMAC key cannot fail; an empty token would be refused.
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).unwrap_or_default()
}

/// Adds one client's message counts to `report`.
fn add_messages(report: &mut WorkerReport, cell: &ClientCell) {
    let messages = cell.messages.load(Ordering::Relaxed);
    report.messages_total += messages;
    report.messages_max = report.messages_max.max(messages);
    let room_messages = u64::from(cell.room_messages.load(Ordering::Relaxed));
    report.room_messages_total += room_messages;
    report.room_messages_max = report.room_messages_max.max(room_messages);
}

impl Pool {
    /// Room moves asked for and not finished.
    pub fn moves_in_flight(&self) -> u64 {
        self.moving
    }
}
