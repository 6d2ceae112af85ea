//! Webhook events in memory (standalone mode): produced with each change exactly as the Redis
//! scripts produce them, kept per group until acknowledged. Not durable: a restart loses what was
//! not delivered (documented in README, "Webhooks").

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::{Aggregate, MemoryBackend, Transitions};
use crate::count::RoomName;
use crate::presence::{BackendError, DeadEvent, EventKind, EventLog, EventPolicy, Member, WebhookEvent};

/// Dead-lettered events kept per group.
const DEAD_KEPT: usize = 10_000;

/// An event of the current step, before it has a version.
pub(super) type Pending = (EventKind, RoomName, Option<Member>);

/// One group's log.
#[derive(Default)]
pub(super) struct GroupEvents {
    next: u64,
    log: BTreeMap<u64, WebhookEvent>,
    dead: VecDeque<DeadEvent>,
    /// Rooms that emptied, and when their `room.vacated` is due.
    vacating: HashMap<RoomName, Instant>,
    lease: Option<(String, Instant)>,
}

impl GroupEvents {
    /// The events of one room's change (`before` / `after` are its connections).
    pub fn on_change(
        &mut self,
        policy: &EventPolicy,
        room: &RoomName,
        before: i64,
        after: i64,
        out: &Transitions,
    ) -> Vec<Pending> {
        let mut events = Vec::new();
        if before == 0 && after > 0 && self.vacating.remove(room).is_none() {
            events.push((EventKind::RoomOccupied, room.clone(), None));
        }
        events.extend(out.joined.iter().map(|m| (EventKind::MemberJoined, room.clone(), Some(m.clone()))));
        events.extend(out.left.iter().map(|m| (EventKind::MemberLeft, room.clone(), Some(m.clone()))));
        if before > 0 && after == 0 {
            self.vacating
                .insert(room.clone(), Instant::now() + Duration::from_millis(policy.vacated_delay_ms));
        }
        events.retain(|(kind, _, _)| policy.wants(*kind));
        events
    }

    /// `room.vacated` for rooms still empty after their delay.
    pub fn due_vacates(
        &mut self,
        policy: &EventPolicy,
        rooms: &BTreeMap<RoomName, Aggregate>,
    ) -> Vec<Pending> {
        let now = Instant::now();
        let due: Vec<RoomName> =
            self.vacating.iter().filter(|(_, at)| **at <= now).map(|(r, _)| r.clone()).collect();
        let mut events = Vec::new();
        for room in due {
            self.vacating.remove(&room);
            if !rooms.contains_key(&room) && policy.wants(EventKind::RoomVacated) {
                events.push((EventKind::RoomVacated, room, None));
            }
        }
        events
    }

    /// Ms until the first waiting vacancy is due.
    pub fn next_due(&self) -> Option<u64> {
        let first = self.vacating.values().min()?;
        Some(u64::try_from(first.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX))
    }

    /// Appends the step's events with its version, trimming to `policy.log_max`.
    pub fn append(&mut self, group: u16, version: u64, policy: &EventPolicy, events: Vec<Pending>) {
        let at =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
        for (kind, room, member) in events {
            self.next += 1;
            let info =
                member.as_ref().and_then(|m| m.info.as_deref()).and_then(|t| serde_json::from_str(t).ok());
            let event = WebhookEvent {
                id: format!("g{group}-m{}", self.next),
                kind: kind.name().to_owned(),
                room: room.to_string(),
                user: member.map(|m| m.user.to_string()),
                info,
                at: u64::try_from(at).unwrap_or(u64::MAX),
                version,
            };
            self.log.insert(self.next, event);
        }
        while self.log.len() as u64 > policy.log_max {
            self.log.pop_first();
        }
    }
}

fn sequence(id: &str) -> Option<u64> {
    id.rsplit_once("-m").and_then(|(_, n)| n.parse().ok())
}

#[async_trait]
impl EventLog for MemoryBackend {
    async fn hold_lease(&self, group: u16, node: &str, ttl_ms: u64) -> Result<bool, BackendError> {
        let mut state = self.lock();
        let events = &mut state.group_mut(group).events;
        let now = Instant::now();
        let free = events.lease.as_ref().is_none_or(|(holder, until)| holder == node || *until <= now);
        if free {
            events.lease = Some((node.to_owned(), now + Duration::from_millis(ttl_ms)));
        }
        Ok(free)
    }

    async fn read(&self, group: u16, _node: &str, max: usize) -> Result<Vec<WebhookEvent>, BackendError> {
        let state = self.lock();
        Ok(state
            .groups
            .get(&group)
            .map(|g| g.events.log.values().take(max).cloned().collect())
            .unwrap_or_default())
    }

    async fn acknowledge(&self, group: u16, ids: &[String]) -> Result<(), BackendError> {
        let mut state = self.lock();
        let log = &mut state.group_mut(group).events.log;
        for seq in ids.iter().filter_map(|id| sequence(id)) {
            log.remove(&seq);
        }
        Ok(())
    }

    async fn dead_letter(&self, group: u16, dead: &[DeadEvent]) -> Result<(), BackendError> {
        {
            let mut state = self.lock();
            let events = &mut state.group_mut(group).events;
            for event in dead {
                events.dead.push_front(event.clone());
            }
            events.dead.truncate(DEAD_KEPT);
        }
        let ids: Vec<String> = dead.iter().map(|d| d.event.id.clone()).collect();
        self.acknowledge(group, &ids).await
    }

    async fn dead(&self, _groups: u16, limit: usize) -> Result<Vec<DeadEvent>, BackendError> {
        let state = self.lock();
        let mut all: Vec<DeadEvent> =
            state.groups.values().flat_map(|g| g.events.dead.iter().cloned()).collect();
        all.sort_by_key(|dead| std::cmp::Reverse(dead.dead_at));
        all.truncate(limit);
        Ok(all)
    }

    async fn backlog(&self, group: u16) -> Result<u64, BackendError> {
        Ok(self.lock().groups.get(&group).map_or(0, |g| g.events.log.len() as u64))
    }
}
