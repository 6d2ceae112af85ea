//! The JSON that goes into `flush.lua` and comes back from it and from the channels. Lua's cjson
//! writes an empty list as `{}`, so every list read here accepts that too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use super::scripts::Names;
use crate::count::RoomName;
use crate::presence::{
    Counts, EventKind, EventPolicy, Flush, FlushReply, Member, NodeInfo, Reap, RoomPolicy, RoomUpdate, Share,
    Snapshot, group_of,
};

/// A user cell as the scripts take it: `[user, sockets, info | null]`.
type CellJson<'a> = (&'a str, u32, Option<&'a str>);

#[derive(Serialize)]
pub struct Payload<'a> {
    node: &'a str,
    inc: u64,
    ttl: u64,
    cap: u32,
    ev: Option<serde_json::Value>,
    /// Announce with SPUBLISH (sharded channels, on a cluster) instead of PUBLISH.
    sharded: bool,
    global: Option<GlobalPart<'a>>,
    groups: Vec<GroupPart<'a>>,
}

/// The events part of a payload (`prelude.lua`'s `new_events`).
pub fn events_json(policy: EventPolicy) -> serde_json::Value {
    serde_json::json!({ "types": policy.names(), "delay": policy.vacated_delay_ms, "max": policy.log_max })
}

#[derive(Serialize)]
struct GlobalPart<'a> {
    tag: String,
    floor: u64,
    c: u32,
    a: u32,
    u: Vec<CellJson<'a>>,
    groups: Vec<u16>,
    done: Vec<(&'a str, u64)>,
}

#[derive(Serialize)]
struct GroupPart<'a> {
    tag: String,
    g: u16,
    floor: u64,
    rooms: Vec<(&'a str, u32, u32, Vec<CellJson<'a>>)>,
    reap: Vec<(&'a str, u64)>,
}

fn cells(share: &Share) -> Vec<CellJson<'_>> {
    share.users.iter().map(|c| (&*c.user, c.connections, c.info.as_deref())).collect()
}

impl<'a> Payload<'a> {
    /// The whole flush as one payload, its parts grouped by slot (global, then each group).
    /// `sharded`: the parts run as separate steps (one per slot, concurrently), so the groups
    /// listed as held also name the groups this flush writes: if the global step lands and a
    /// group's does not, a reap must still visit that group.
    pub fn new(flush: &'a Flush, names: &Names, policy: &RoomPolicy, ttl_ms: u64, sharded: bool) -> Self {
        let groups = policy.groups;
        let floors: BTreeMap<u16, u64> = flush.group_floors.iter().copied().collect();
        let mut parts: BTreeMap<u16, GroupPart<'a>> = BTreeMap::new();
        for room in &flush.rooms {
            let g = group_of(&room.room, groups);
            let entry = parts.entry(g).or_insert_with(|| empty_part(names, g, &floors));
            entry.rooms.push((
                room.room.as_str(),
                room.share.connections,
                room.share.anonymous,
                cells(&room.share),
            ));
        }
        for reap in &flush.reaps {
            for &g in &reap.groups {
                let entry = parts.entry(g).or_insert_with(|| empty_part(names, g, &floors));
                entry.reap.push((&reap.node, reap.incarnation));
            }
        }
        for &g in &flush.tick_groups {
            parts.entry(g).or_insert_with(|| empty_part(names, g, &floors));
        }
        let global = GlobalPart {
            tag: names.global_tag(),
            floor: flush.global_floor,
            c: flush.global.connections,
            a: flush.global.anonymous,
            u: cells(&flush.global),
            groups: if sharded {
                let written = flush.rooms.iter().map(|room| group_of(&room.room, groups));
                let held: BTreeSet<u16> = flush.groups_held.iter().copied().chain(written).collect();
                held.into_iter().collect()
            } else {
                flush.groups_held.clone()
            },
            done: flush.reaps_done.iter().map(|r| (r.node.as_str(), r.incarnation)).collect(),
        };
        Self {
            node: &flush.node,
            inc: flush.incarnation,
            ttl: ttl_ms,
            cap: policy.max_members_listed,
            ev: policy.events.map(events_json),
            sharded,
            global: Some(global),
            groups: parts.into_values().collect(),
        }
    }

    /// The payload as one step per slot: the global part, then one per group.
    pub fn into_parts(self) -> (Payload<'a>, Vec<Payload<'a>>) {
        let Self { node, inc, ttl, cap, ev, sharded, global, groups } = self;
        let part = |global, groups| Payload { node, inc, ttl, cap, ev: ev.clone(), sharded, global, groups };
        let rest = groups.into_iter().map(|group| part(None, vec![group])).collect();
        (part(global, Vec::new()), rest)
    }

    /// One key per slot the payload touches, to route the call.
    pub fn route_keys(&self, names: &Names) -> Vec<String> {
        let mut keys: Vec<String> = self.global.iter().map(|_| names.global_route()).collect();
        keys.extend(self.groups.iter().map(|g| names.group_route(g.g)));
        keys
    }
}

fn empty_part<'a>(names: &Names, g: u16, floors: &BTreeMap<u16, u64>) -> GroupPart<'a> {
    GroupPart {
        tag: names.group_tag(g),
        g,
        floor: floors.get(&g).copied().unwrap_or(0),
        rooms: Vec::new(),
        reap: Vec::new(),
    }
}

/// A list that Lua may have written as `{}`.
fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Object(map) if map.is_empty() => Ok(Vec::new()),
        value => serde_json::from_value(value).map_err(serde::de::Error::custom),
    }
}

#[derive(Deserialize)]
struct Reply {
    global: Option<GlobalReply>,
    #[serde(deserialize_with = "list")]
    groups: Vec<GroupReply>,
}

#[derive(Deserialize)]
struct GlobalReply {
    c: i64,
    u: i64,
    v: u64,
    inc: u64,
    restored: u8,
    #[serde(deserialize_with = "list")]
    reaped: Vec<String>,
    now: i64,
    ttl: i64,
    #[serde(deserialize_with = "list")]
    nodes: Vec<(String, i64, i64)>,
    #[serde(deserialize_with = "list")]
    pending: Vec<Reap>,
}

#[derive(Deserialize)]
struct GroupReply {
    g: u16,
    v: u64,
    #[serde(deserialize_with = "list")]
    rooms: Vec<RoomEntry>,
    /// Ms until the first waiting `room.vacated` is due (when one waits).
    #[serde(default)]
    due: Option<i64>,
    /// The events produced: `[kind, room, user | false, info | false]`.
    #[serde(deserialize_with = "list", default)]
    events: Vec<(String, serde_json::Value, serde_json::Value, serde_json::Value)>,
}

/// `[room, c, u, joined, left, truncated]`, joined and left as `[[user, info | false]...]`.
#[derive(Deserialize)]
struct RoomEntry(
    String,
    i64,
    i64,
    #[serde(deserialize_with = "list")] Vec<(String, serde_json::Value)>,
    #[serde(deserialize_with = "list")] Vec<(String, serde_json::Value)>,
    bool,
);

impl RoomEntry {
    fn update(self, version: u64) -> Result<RoomUpdate, String> {
        let RoomEntry(room, connections, users, joined, left, truncated) = self;
        let room = RoomName::new(&room).map_err(|e| format!("room {room:?}: {e}"))?;
        let members = |list: Vec<(String, serde_json::Value)>| {
            list.into_iter()
                .map(|(user, info)| Member { user: user.into(), info: info.as_str().map(Arc::from) })
                .collect()
        };
        Ok(RoomUpdate {
            room,
            snapshot: Snapshot { counts: Counts { connections, users }, version },
            joined: members(joined),
            left: members(left),
            truncated,
        })
    }
}

/// Parses `flush.lua`'s replies (one per slot the flush touched) as one.
pub fn flush_reply(texts: &[String]) -> Result<FlushReply, String> {
    let mut reply = Reply { global: None, groups: Vec::new() };
    for text in texts {
        let part: Reply = serde_json::from_str(text).map_err(|e| format!("flush reply: {e}"))?;
        reply.global = reply.global.or(part.global);
        reply.groups.extend(part.groups);
    }
    let mut out = FlushReply::default();
    if let Some(g) = reply.global {
        out.global = Snapshot { counts: Counts { connections: g.c, users: g.u }, version: g.v };
        out.incarnation = g.inc;
        out.restored = g.restored == 1;
        out.reaped = g.reaped;
        out.pending_reaps = g.pending;
        out.nodes = g
            .nodes
            .into_iter()
            .map(|(id, users, deadline)| NodeInfo {
                id,
                users,
                heartbeat_age_ms: (g.now - (deadline - g.ttl)).max(0).unsigned_abs(),
            })
            .collect();
    }
    for group in reply.groups {
        out.group_versions.push((group.g, group.v));
        if let Some(due) = group.due {
            out.vacate_due.push((group.g, u64::try_from(due).unwrap_or(0)));
        }
        out.produced
            .extend(group.events.iter().filter_map(|e| EventKind::from_name(&e.0)).map(|k| (group.g, k)));
        for room in group.rooms {
            out.rooms.push(room.update(group.v)?);
        }
    }
    Ok(out)
}

/// What the channels carry.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Published {
    /// A group's rooms changed: `{"g","v","rooms","reaped","at"}`.
    Rooms {
        g: u16,
        v: u64,
        #[serde(deserialize_with = "list")]
        rooms: Vec<RoomEntryOwned>,
        #[serde(deserialize_with = "list", default)]
        reaped: Vec<String>,
        /// When the script ran (Unix ms, Redis clock): the start of the announcement's lag.
        #[serde(default)]
        at: Option<u64>,
    },
    /// The global count changed: `{"v","c","u","reaped","at"}`.
    Global {
        v: u64,
        c: i64,
        u: i64,
        #[serde(deserialize_with = "list", default)]
        reaped: Vec<String>,
        /// As for `Rooms`.
        #[serde(default)]
        at: Option<u64>,
    },
}

/// A room entry on a channel (same shape as in replies).
#[derive(Deserialize)]
pub struct RoomEntryOwned(RoomEntry);

impl RoomEntryOwned {
    /// The update it describes, at the group's `version`.
    pub fn update(self, version: u64) -> Result<RoomUpdate, String> {
        self.0.update(version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::presence::RoomShare;

    fn policy() -> RoomPolicy {
        RoomPolicy { groups: 16, max_members_listed: 100, events: None }
    }

    fn flush(rooms: &[&str], held: &[u16]) -> Flush {
        let share = Share { connections: 1, anonymous: 1, users: Vec::new() };
        Flush {
            node: "a".into(),
            incarnation: 3,
            groups_held: held.to_vec(),
            rooms: rooms
                .iter()
                .map(|r| RoomShare { room: RoomName::new(r).expect("room"), share: share.clone() })
                .collect(),
            ..Flush::default()
        }
    }

    #[test]
    fn a_cluster_payload_is_one_part_per_slot_and_lists_the_groups_it_writes_as_held() {
        let names = Names::new("p");
        let rooms = ["x", "y", "z"];
        let flush = flush(&rooms, &[]);
        let written: BTreeSet<u16> =
            rooms.iter().map(|r| group_of(&RoomName::new(r).expect("room"), 16)).collect();
        let (global, groups) = Payload::new(&flush, &names, &policy(), 3000, true).into_parts();
        let global: serde_json::Value = serde_json::to_value(&global).expect("json");
        assert_eq!(global["sharded"], true);
        assert_eq!(global["groups"], serde_json::json!([]), "the global part carries no group");
        let held: BTreeSet<u16> = serde_json::from_value(global["global"]["groups"].clone()).expect("held");
        assert_eq!(held, written, "a group written in this flush is recorded as held");
        assert_eq!(groups.len(), written.len(), "one part per group");
        for part in &groups {
            assert_eq!(part.route_keys(&names).len(), 1, "each part routes to one slot");
            assert!(part.global.is_none());
        }
        let single =
            serde_json::to_value(Payload::new(&flush, &names, &policy(), 3000, false)).expect("json");
        assert_eq!(
            single["global"]["groups"],
            serde_json::json!([]),
            "one Redis: held as the coordinator says"
        );
        assert_eq!(single["sharded"], false);
    }
}
