//! Settling the differential test's cluster, and comparing both backends' whole state with each
//! other and with the truth.

use rollcall_node::count::Scope;
use rollcall_node::presence::{MemberCount, Page, PresenceBackend, RoomCount};

use super::{NODES, World, rooms, same_replies, truth};

/// Rounds of flushes (every node once per round) a settle may take: a restored node writes its
/// rooms again in the next round, pending reaps are run in the one after and acknowledged in the
/// next; data loss and reaps can chain, so a few more.
const SETTLE_ROUNDS: usize = 8;

impl World<'_> {
    /// Every node flushes until a whole round wrote no change, restored nothing and left nothing
    /// pending; then
    /// both backends must hold exactly the truth.
    pub(super) async fn settle(&mut self) {
        let mut quiet_round = None;
        for _ in 0..SETTLE_ROUNDS {
            let mut busy = false;
            let mut last = Vec::new();
            for node in 0..NODES {
                let changed = self.nodes[usize::from(node)].local.has_changes();
                let replies = self.flush(node).await;
                let sim = &self.nodes[usize::from(node)];
                busy |= changed
                    || replies.redis.restored
                    || !sim.redis.pending_reaps.is_empty()
                    || !sim.redis.reaps_done.is_empty();
                last.push(replies);
            }
            if !busy {
                quiet_round = Some(last);
                break;
            }
        }
        let last =
            quiet_round.unwrap_or_else(|| panic!("not settled after {SETTLE_ROUNDS} rounds of flushes"));
        let global = truth(&self.nodes, &Scope::Global);
        for replies in &last {
            same_replies(replies);
            assert_eq!(replies.redis.global.counts, global, "the global count is the truth");
        }
        self.same_state().await;
        self.clean = true;
    }

    async fn same_state(&self) {
        let rooms = rooms();
        let held = self.redis.room_counts(&rooms).await.expect("redis room counts");
        assert_eq!(held, self.memory.room_counts(&rooms).await.expect("memory room counts"), "room counts");
        let expected: Vec<_> = rooms.iter().map(|r| truth(&self.nodes, &Scope::Room(r.clone()))).collect();
        assert_eq!(held, expected, "room counts are the truth");
        for prefix in ["", "room-", "room-1", "nothing"] {
            for limit in [1, 2, 10] {
                assert_eq!(
                    listing(&self.redis, prefix, limit).await,
                    listing(&self.memory, prefix, limit).await,
                    "list_rooms({prefix:?}) by pages of {limit}"
                );
            }
        }
        for room in &rooms {
            for limit in [1, 3] {
                assert_eq!(
                    members(&self.redis, room, limit).await,
                    members(&self.memory, room, limit).await,
                    "members of {room} by pages of {limit}"
                );
            }
        }
    }
}

/// Every page of `list_rooms(prefix)`, following the cursors (bounded).
async fn listing(backend: &dyn PresenceBackend, prefix: &str, limit: usize) -> Vec<Page<RoomCount>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let page = backend.list_rooms(prefix, limit, cursor.as_deref()).await.expect("list rooms");
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
    }
    panic!("list_rooms({prefix:?}) never ends");
}

/// Every page of `members(room)`, following the cursors (bounded).
async fn members(
    backend: &dyn PresenceBackend,
    room: &rollcall_node::count::RoomName,
    limit: usize,
) -> Vec<Page<MemberCount>> {
    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..20 {
        let page = backend.members(room, limit, cursor.as_deref()).await.expect("members");
        cursor = page.next.clone();
        pages.push(page);
        if cursor.is_none() {
            return pages;
        }
    }
    panic!("members({room}) never ends");
}
