//! The count a node shows for one scope (the cluster, or a room), as pure state.
//!
//! The node shows `count in the newest accepted snapshot - this node's share as counted in it +
//! this node's part now`. So a newcomer sees itself at once, a node cut off from Redis keeps
//! adjusting the last count it knew by its own joins and leaves, and once the node's write lands
//! the two terms cancel out. Before the first authoritative snapshot there is nothing to adjust,
//! so nothing is shown.

use crate::presence::{Counts, MAX_VERSION, Snapshot};

/// One node's view of one scope's count.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// The newest snapshot this node accepted.
    cluster: Option<Snapshot>,
    /// This node's share as included in `cluster`.
    share_in_cluster: Counts,
}

impl Tally {
    /// A scope this node has heard nothing about yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The version of the newest snapshot accepted, 0 before any.
    pub fn version(&self) -> u64 {
        self.cluster.map_or(0, |s| s.version)
    }

    /// Whether an authoritative snapshot was accepted.
    pub fn is_known(&self) -> bool {
        self.cluster.is_some()
    }

    /// What clients should see, given this node's part `local` now; `None` before the first
    /// authoritative snapshot, since a node that never heard from the backend has no number.
    pub fn displayed(&self, local: Counts) -> Option<Counts> {
        self.cluster.map(|cluster| cluster.counts.adjusted(local, self.share_in_cluster).at_least(local))
    }

    /// An announcement arrived. Returns false (and changes nothing) if it is not newer than
    /// what this node already shows: publish order is mutation order, so older means stale.
    /// A version beyond [`MAX_VERSION`] is refused too: no backend gets there (it was forged).
    pub fn observe(&mut self, snapshot: Snapshot) -> bool {
        if snapshot.version > MAX_VERSION || self.cluster.is_some_and(|c| snapshot.version <= c.version) {
            return false;
        }
        self.cluster = Some(snapshot);
        true
    }

    /// An announcement from a step that removed this node's share (it was reaped while alive:
    /// partitioned, paused). Its count holds none of this node's part. False if not newer.
    pub fn observe_reaped(&mut self, snapshot: Snapshot) -> bool {
        if !self.observe(snapshot) {
            return false;
        }
        self.share_in_cluster = Counts::default();
        true
    }

    /// This node's write of `share` succeeded and the backend then held `snapshot`.
    ///
    /// Any count announced after the write includes the written share, so the share counted in
    /// the shown count is `share` whether or not `snapshot` itself is newer than what is shown.
    ///
    /// The caller holds back announcements while a write is in flight, so everything accepted so
    /// far was announced before the write ran and cannot be newer than the backend's reply. If
    /// it is, or holds other counts at the reply's own version, it did not come from the
    /// backend's history (a forged message, or a failover to a replica that lost writes): the
    /// reply is authoritative and replaces it. Returns true then.
    pub fn written(&mut self, share: Counts, snapshot: Snapshot) -> bool {
        let rewound = self.cluster.is_some_and(|c| {
            snapshot.version < c.version || (snapshot.version == c.version && snapshot.counts != c.counts)
        });
        if rewound {
            self.cluster = Some(snapshot);
        } else {
            self.observe(snapshot);
        }
        self.share_in_cluster = share;
        rewound
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(connections: i64, version: u64) -> Snapshot {
        Snapshot { counts: Counts { connections, users: connections }, version }
    }

    fn local(n: i64) -> Counts {
        Counts { connections: n, users: n }
    }

    fn shown(tally: &Tally, here: i64) -> i64 {
        tally.displayed(local(here)).map_or(i64::MIN, |c| c.connections)
    }

    #[test]
    fn a_newcomer_sees_itself_before_the_write_lands() {
        let mut tally = Tally::new();
        tally.written(local(0), snap(7, 3));
        assert_eq!(shown(&tally, 1), 8);
        tally.written(local(1), snap(8, 4));
        assert_eq!(shown(&tally, 1), 8);
    }

    #[test]
    fn older_announcements_are_dropped() {
        let mut tally = Tally::new();
        assert!(tally.observe(snap(5, 10)));
        assert!(!tally.observe(snap(4, 9)));
        assert!(!tally.observe(snap(4, 10)));
        assert_eq!(shown(&tally, 0), 5);
        assert!(tally.observe(snap(6, 11)));
        assert_eq!(shown(&tally, 0), 6);
    }

    #[test]
    fn an_announcement_held_back_during_a_write_applies_after_its_reply() {
        let mut tally = Tally::new();
        tally.written(local(0), snap(10, 1));
        // Another node's announcement (v3) includes our write (v2); the coordinator held it
        // back while our write was in flight, so the reply comes first.
        assert!(!tally.written(local(2), snap(12, 2)));
        assert!(tally.observe(snap(13, 3)));
        assert_eq!(shown(&tally, 2), 13);
    }

    #[test]
    fn the_backend_reply_overrules_a_count_from_the_future() {
        let mut tally = Tally::new();
        tally.written(local(0), snap(10, 5));
        assert!(tally.observe(snap(-3, 1_000_000)), "a forged announcement is accepted at first");
        assert!(tally.written(local(0), snap(10, 6)), "the next write's reply rewinds it");
        assert_eq!(shown(&tally, 0), 10);
        assert!(tally.observe(snap(11, 7)), "and genuine announcements flow again");
    }

    #[test]
    fn a_version_no_backend_reaches_is_refused() {
        let mut tally = Tally::new();
        tally.written(local(0), snap(10, 5));
        assert!(!tally.observe(snap(-3, MAX_VERSION + 1)));
        assert!(tally.observe(snap(11, MAX_VERSION)));
        assert_eq!(tally.version(), MAX_VERSION);
    }

    #[test]
    fn cut_off_from_the_backend_local_changes_still_show() {
        let mut tally = Tally::new();
        tally.written(local(3), snap(30, 5));
        assert_eq!(shown(&tally, 2), 29);
    }

    #[test]
    fn a_count_that_reaped_this_node_is_shown_with_the_local_part_added() {
        let mut tally = Tally::new();
        tally.written(local(10), snap(30, 5));
        // Reaped while cut off: the others' count no longer holds our 10.
        assert!(tally.observe_reaped(snap(20, 6)));
        assert_eq!(shown(&tally, 11), 31);
        tally.written(local(11), snap(31, 7));
        assert_eq!(shown(&tally, 11), 31);
    }

    #[test]
    fn shows_nothing_before_the_first_snapshot() {
        let mut tally = Tally::new();
        assert_eq!(tally.displayed(local(1)), None);
        assert!(tally.observe(snap(9, 1)));
        assert_eq!(shown(&tally, 1), 10);
    }

    #[test]
    fn never_shows_fewer_than_its_own_part() {
        let mut tally = Tally::new();
        tally.written(local(0), snap(0, 1));
        assert!(tally.observe(snap(0, 2)));
        assert_eq!(shown(&tally, 1), 1);
    }

    #[test]
    fn users_follow_the_same_arithmetic() {
        let mut tally = Tally::new();
        let mine = Counts { connections: 3, users: 1 }; // one person, three tabs
        tally.written(mine, Snapshot { counts: Counts { connections: 10, users: 6 }, version: 1 });
        let now = Counts { connections: 4, users: 2 }; // a second person arrived here
        assert_eq!(tally.displayed(now), Some(Counts { connections: 11, users: 7 }));
    }
}
