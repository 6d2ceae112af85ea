//! Standalone mode: the counts live in this process. Same semantics as Redis, one process.
//! Nodes sharing one `MemoryBackend` (tests) are never reaped: there is no heartbeat deadline
//! in a single process.

mod events;
mod rooms;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::mpsc;

pub use self::rooms::{Aggregate, Transitions, net};
use super::{
    Announcement, BackendError, BackendEvent, Counts, Flush, FlushReply, MemberCount, NodeInfo, Page,
    PresenceBackend, RoomCount, RoomPolicy, RoomUpdate, Share, Snapshot, group_of,
};
use crate::count::RoomName;

/// The in-memory backend of a standalone node.
pub struct MemoryBackend {
    policy: RoomPolicy,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    global: Aggregate,
    global_version: u64,
    nodes: HashMap<String, NodeEntry>,
    incarnations: u64,
    groups: HashMap<u16, Group>,
    subscribers: Vec<mpsc::Sender<BackendEvent>>,
    /// Events produced by the step in progress, for its reply.
    produced: Vec<(u16, crate::presence::EventKind)>,
}

struct NodeEntry {
    incarnation: u64,
    heartbeat: Instant,
}

#[derive(Default)]
struct Group {
    version: u64,
    rooms: BTreeMap<RoomName, Aggregate>,
    events: events::GroupEvents,
}

impl MemoryBackend {
    /// Empty counts.
    pub fn new(policy: RoomPolicy) -> Self {
        Self { policy, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave a count half-written: recover the data.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl State {
    fn announce(&mut self, announcement: Announcement) {
        let event = BackendEvent::Announced(announcement);
        self.subscribers
            .retain(|tx| !matches!(tx.try_send(event.clone()), Err(mpsc::error::TrySendError::Closed(_))));
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        self.nodes
            .iter()
            .map(|(id, entry)| NodeInfo {
                id: id.clone(),
                users: self.global.share_of(id),
                heartbeat_age_ms: u64::try_from(entry.heartbeat.elapsed().as_millis()).unwrap_or(u64::MAX),
            })
            .collect()
    }

    /// Registers `node` if it is not registered under `incarnation`; true if it was not.
    fn register(&mut self, node: &str, incarnation: u64) -> (u64, bool) {
        if let Some(entry) =
            self.nodes.get_mut(node).filter(|e| e.incarnation == incarnation && incarnation != 0)
        {
            entry.heartbeat = Instant::now();
            return (incarnation, false);
        }
        // As in Redis: never a number this node has had, even after the counter started again.
        self.incarnations = self.incarnations.max(incarnation) + 1;
        let fresh = self.incarnations;
        self.nodes.insert(node.to_owned(), NodeEntry { incarnation: fresh, heartbeat: Instant::now() });
        (fresh, true)
    }

    /// Writes `node`'s global share; `fresh` (a new incarnation) first removes whatever an older
    /// one of the same node id left, as its share is absolute for the cells it names only.
    fn set_global(&mut self, node: &str, share: &Share, floor: u64, fresh: bool) -> Snapshot {
        let before = self.global.counts();
        let mut ignored = Transitions::default();
        if fresh {
            self.global.remove_node(node, &mut ignored);
        }
        self.global.set_share(node, share, &mut ignored);
        if fresh || self.global.counts() != before {
            self.global_version = self.global_version.max(floor) + 1;
            let snapshot = Snapshot { counts: self.global.counts(), version: self.global_version };
            self.announce(Announcement::Global { snapshot, reaped: Vec::new() });
        }
        Snapshot { counts: self.global.counts(), version: self.global_version }
    }

    /// Applies `change` to each room in `rooms` (per group), announces per group, returns updates.
    fn change_rooms<'a>(
        &mut self,
        policy: RoomPolicy,
        rooms: impl Iterator<Item = &'a RoomName>,
        floors: &HashMap<u16, u64>,
        mut change: impl FnMut(&RoomName, &mut Aggregate, &mut Transitions),
    ) -> (Vec<RoomUpdate>, Vec<(u16, u64)>) {
        let mut by_group: BTreeMap<u16, Vec<(RoomName, Transitions, bool)>> = BTreeMap::new();
        let mut produced: BTreeMap<u16, Vec<events::Pending>> = BTreeMap::new();
        for room in rooms {
            let id = group_of(room, policy.groups);
            let group = self.groups.entry(id).or_default();
            let aggregate = group.rooms.entry(room.clone()).or_default();
            let before = aggregate.counts();
            let mut out = Transitions::default();
            change(room, aggregate, &mut out);
            let out = net(out);
            let after = aggregate.counts();
            let changed = after != before || !out.joined.is_empty() || !out.left.is_empty();
            if let Some(policy) = &policy.events {
                let events =
                    group.events.on_change(policy, room, before.connections, after.connections, &out);
                produced.entry(id).or_default().extend(events);
            }
            by_group.entry(id).or_default().push((room.clone(), out, changed));
        }
        let (mut updates, mut versions) = (Vec::new(), Vec::new());
        for (id, rooms) in by_group {
            let group = self.groups.entry(id).or_default();
            let events = produced.remove(&id).unwrap_or_default();
            if rooms.iter().any(|(_, _, changed)| *changed) || !events.is_empty() {
                group.version = group.version.max(floors.get(&id).copied().unwrap_or(0)) + 1;
            }
            if let Some(policy) = &policy.events {
                self.produced.extend(events.iter().map(|(kind, _, _)| (id, *kind)));
                group.events.append(id, group.version, policy, events);
            }
            let mut announced = Vec::new();
            for (room, out, changed) in rooms {
                let aggregate = group.rooms.get(&room).cloned().unwrap_or_default();
                if aggregate.is_empty() {
                    group.rooms.remove(&room);
                }
                let listed = aggregate.member_count() <= policy.max_members_listed as usize;
                let update = RoomUpdate {
                    room,
                    snapshot: Snapshot { counts: aggregate.counts(), version: group.version },
                    joined: if listed { out.joined } else { Vec::new() },
                    left: if listed { out.left } else { Vec::new() },
                    truncated: !listed,
                };
                if changed {
                    announced.push(update.clone());
                }
                updates.push(update);
            }
            versions.push((id, group.version));
            if !announced.is_empty() {
                let version = group.version;
                self.announce(Announcement::Rooms {
                    group: id,
                    version,
                    rooms: announced,
                    reaped: Vec::new(),
                });
            }
        }
        (updates, versions)
    }

    fn group_mut(&mut self, group: u16) -> &mut Group {
        self.groups.entry(group).or_default()
    }

    /// Produces the `room.vacated` events now due, one step (and version) per group.
    fn tick_vacates(&mut self, policy: RoomPolicy) {
        let Some(events) = policy.events else { return };
        for (id, group) in &mut self.groups {
            let due = group.events.due_vacates(&events, &group.rooms);
            if !due.is_empty() {
                self.produced.extend(due.iter().map(|(kind, _, _)| (*id, *kind)));
                group.version += 1;
                group.events.append(*id, group.version, &events, due);
            }
        }
    }

    fn rooms_of(&self, node: &str) -> Vec<RoomName> {
        let holds = |aggregate: &Aggregate| aggregate.share_of(node) > 0;
        self.groups
            .values()
            .flat_map(|g| g.rooms.iter().filter(|(_, a)| holds(a)).map(|(r, _)| r.clone()))
            .collect()
    }
}

#[async_trait]
impl PresenceBackend for MemoryBackend {
    async fn flush(&self, flush: &Flush) -> Result<FlushReply, BackendError> {
        let mut state = self.lock();
        state.produced.clear();
        state.tick_vacates(self.policy);
        let node: &str = &flush.node;
        let (incarnation, restored) = state.register(node, flush.incarnation);
        let global = state.set_global(node, &flush.global, flush.global_floor, restored);
        let floors: HashMap<u16, u64> = flush.group_floors.iter().copied().collect();
        let shares: HashMap<&RoomName, &Share> = flush.rooms.iter().map(|r| (&r.room, &r.share)).collect();
        // A new incarnation replaces whatever an older one of the same node id left behind.
        let stale: Vec<RoomName> = if restored {
            state.rooms_of(node).into_iter().filter(|r| !shares.contains_key(r)).collect()
        } else {
            Vec::new()
        };
        let touched = flush.rooms.iter().map(|r| &r.room).chain(stale.iter());
        let (rooms, group_versions) =
            state.change_rooms(self.policy, touched, &floors, |room, aggregate, out| {
                if restored {
                    aggregate.remove_node(node, out);
                }
                if let Some(share) = shares.get(room) {
                    aggregate.set_share(node, share, out);
                }
            });
        Ok(FlushReply {
            global,
            incarnation,
            restored,
            reaped: Vec::new(),
            nodes: state.nodes(),
            pending_reaps: Vec::new(),
            rooms,
            group_versions,
            produced: std::mem::take(&mut state.produced),
            vacate_due: state.groups.iter().filter_map(|(id, g)| Some((*id, g.events.next_due()?))).collect(),
        })
    }

    async fn deregister(&self, node: &str, _incarnation: u64, _groups: &[u16]) -> Result<(), BackendError> {
        let mut state = self.lock();
        let rooms = state.rooms_of(node);
        let (floor, mut ignored) = (state.global_version, Transitions::default());
        state.global.remove_node(node, &mut ignored);
        state.nodes.remove(node);
        state.set_global(node, &Share::default(), floor, true);
        let node = node.to_owned();
        state.change_rooms(self.policy, rooms.iter(), &HashMap::new(), |_, aggregate, out| {
            aggregate.remove_node(&node, out);
        });
        Ok(())
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        if events.try_send(BackendEvent::Subscribed).is_ok() {
            self.lock().subscribers.push(events);
        }
    }

    async fn room_counts(&self, rooms: &[RoomName]) -> Result<Vec<Counts>, BackendError> {
        let state = self.lock();
        let count = |room: &RoomName| {
            let group = state.groups.get(&group_of(room, self.policy.groups));
            group.and_then(|g| g.rooms.get(room)).map(Aggregate::counts).unwrap_or_default()
        };
        Ok(rooms.iter().map(count).collect())
    }

    async fn list_rooms(
        &self,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RoomCount>, BackendError> {
        let state = self.lock();
        let mut rooms: Vec<RoomCount> = state
            .groups
            .values()
            .flat_map(|g| g.rooms.iter())
            .filter(|(room, _)| room.as_str().starts_with(prefix) && cursor.is_none_or(|c| room.as_str() > c))
            .map(|(room, aggregate)| RoomCount { room: room.clone(), counts: aggregate.counts() })
            .collect();
        rooms.sort_by(|a, b| a.room.cmp(&b.room));
        Ok(page(rooms, limit, |r| r.room.to_string()))
    }

    async fn members(
        &self,
        room: &RoomName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<MemberCount>, BackendError> {
        let state = self.lock();
        let group = state.groups.get(&group_of(room, self.policy.groups));
        let members: Vec<MemberCount> = group
            .and_then(|g| g.rooms.get(room))
            .map(|aggregate| {
                aggregate
                    .members()
                    .filter(|(user, _, _)| cursor.is_none_or(|c| &***user > c))
                    .take(limit + 1)
                    .map(|(user, connections, info)| MemberCount {
                        user: user.clone(),
                        info: info.cloned(),
                        connections,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(page(members, limit, |m| m.user.to_string()))
    }

    async fn user_connections(&self, user: &str) -> Result<i64, BackendError> {
        Ok(self.lock().global.member_connections(user))
    }

    fn mode(&self) -> &'static str {
        "standalone"
    }
}

/// The first `limit` items, and the cursor after the last of them when more follow.
pub(super) fn page<T>(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Page<T> {
    let more = items.len() > limit;
    items.truncate(limit);
    let next = if more { items.last().map(key) } else { None };
    Page { items, next }
}
