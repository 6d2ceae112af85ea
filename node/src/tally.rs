//! The number a node shows, as pure state: no sockets, no Redis, no clock.
//!
//! The node shows `cluster total - this node's share as counted in that total + local sockets`.
//! So a newcomer sees itself at once, a node cut off from Redis keeps adjusting the last total it
//! knew by its own joins and leaves, and once the node's write lands the two terms cancel out.
//! Before the first authoritative total there is nothing to adjust, so nothing is shown.

use crate::presence::Snapshot;

/// One node's view of the count.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Sockets connected to this node right now.
    local: i64,
    /// The newest announced total this node has accepted.
    cluster: Option<Snapshot>,
    /// This node's share as included in `cluster`.
    share_in_cluster: i64,
    /// The share the backend last acknowledged, if any write succeeded.
    written: Option<i64>,
}

impl Tally {
    /// A node with no sockets that has heard nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A socket connected here.
    pub fn join(&mut self) {
        self.local += 1;
    }

    /// A socket left this node.
    pub fn leave(&mut self) {
        self.local -= 1;
    }

    /// Sockets on this node.
    pub fn local(&self) -> i64 {
        self.local
    }

    /// The version of the newest total accepted, 0 before any.
    pub fn version(&self) -> u64 {
        self.cluster.map_or(0, |s| s.version)
    }

    /// What clients of this node should see now: `None` until one authoritative total has been
    /// accepted, because a node that never heard from the backend has no number to show.
    pub fn displayed(&self) -> Option<i64> {
        self.cluster.map(|cluster| (cluster.total - self.share_in_cluster + self.local).max(self.local))
    }

    /// True when the backend does not hold this node's current share.
    pub fn needs_write(&self) -> bool {
        self.written != Some(self.local)
    }

    /// An announcement arrived. Returns false (and changes nothing) if it is not newer than
    /// what this node already shows: publish order is mutation order, so older means stale.
    pub fn observe(&mut self, snapshot: Snapshot) -> bool {
        if self.cluster.is_some_and(|c| snapshot.version <= c.version) {
            return false;
        }
        self.cluster = Some(snapshot);
        true
    }

    /// An announcement from a step that reaped this node (while it was alive: partitioned,
    /// paused). Its total holds none of this node's share, and the backend no longer holds the
    /// share either. Returns false (and changes nothing) if it is not newer than what is shown.
    pub fn observe_reaped(&mut self, snapshot: Snapshot) -> bool {
        if !self.observe(snapshot) {
            return false;
        }
        self.share_in_cluster = 0;
        self.written = None;
        true
    }

    /// This node's write of `share` succeeded and the backend then held `snapshot`.
    ///
    /// Any total announced after the write includes the written share, so the share counted in
    /// the shown total is `share` whether or not `snapshot` itself is newer than what is shown.
    ///
    /// The caller holds back announcements while a write is in flight, so everything accepted so
    /// far was announced before the write ran and cannot be newer than the backend's reply. If
    /// it is, it did not come from the backend's history (a forged message, or a failover to a
    /// replica that lost writes): the reply is authoritative and replaces it. Returns true then.
    pub fn written(&mut self, share: i64, snapshot: Snapshot) -> bool {
        let rewound = self.cluster.is_some_and(|c| snapshot.version < c.version);
        if rewound {
            self.cluster = Some(snapshot);
        } else {
            self.observe(snapshot);
        }
        self.share_in_cluster = share;
        self.written = Some(share);
        rewound
    }

    /// The backend may have lost or reaped our share: force the next write.
    pub fn forget_written(&mut self) {
        self.written = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(total: i64, version: u64) -> Snapshot {
        Snapshot { total, version }
    }

    #[test]
    fn a_newcomer_sees_itself_before_the_write_lands() {
        let mut tally = Tally::new();
        tally.written(0, snap(7, 3));
        tally.join();
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 8);
        assert!(tally.needs_write());
        tally.written(1, snap(8, 4));
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 8);
        assert!(!tally.needs_write());
    }

    #[test]
    fn older_announcements_are_dropped() {
        let mut tally = Tally::new();
        assert!(tally.observe(snap(5, 10)));
        assert!(!tally.observe(snap(4, 9)));
        assert!(!tally.observe(snap(4, 10)));
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 5);
        assert!(tally.observe(snap(6, 11)));
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 6);
    }

    #[test]
    fn an_announcement_held_back_during_a_write_applies_after_its_reply() {
        let mut tally = Tally::new();
        tally.written(0, snap(10, 1));
        tally.join();
        tally.join();
        // Another node's announcement (v3) includes our write (v2); the coordinator held it
        // back while our write was in flight, so the reply comes first.
        assert!(!tally.written(2, snap(12, 2)));
        assert!(tally.observe(snap(13, 3)));
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 13);
    }

    #[test]
    fn the_backend_reply_overrules_a_total_from_the_future() {
        let mut tally = Tally::new();
        tally.written(0, snap(10, 5));
        assert!(tally.observe(snap(-3, 1_000_000)), "a forged announcement is accepted at first");
        assert!(tally.written(0, snap(10, 6)), "the next write's reply rewinds it");
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 10);
        assert!(tally.observe(snap(11, 7)), "and genuine announcements flow again");
    }

    #[test]
    fn cut_off_from_the_backend_local_changes_still_show() {
        let mut tally = Tally::new();
        for _ in 0..3 {
            tally.join();
        }
        tally.written(3, snap(30, 5));
        tally.leave();
        tally.leave();
        tally.join();
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 29);
    }

    #[test]
    fn join_then_leave_nets_out() {
        let mut tally = Tally::new();
        tally.written(0, snap(4, 1));
        tally.join();
        tally.leave();
        assert!(!tally.needs_write());
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 4);
    }

    #[test]
    fn a_total_that_reaped_this_node_is_shown_with_the_local_sockets_added() {
        let mut tally = Tally::new();
        for _ in 0..10 {
            tally.join();
        }
        tally.written(10, snap(30, 5));
        tally.join();
        // Reaped while cut off: the others' total no longer holds our 10.
        assert!(tally.observe_reaped(snap(20, 6)));
        assert_eq!(tally.displayed(), Some(31));
        assert!(tally.needs_write(), "the share must be put back");
        tally.written(11, snap(31, 7));
        assert_eq!(tally.displayed(), Some(31));
    }

    #[test]
    fn shows_nothing_before_the_first_total() {
        let mut tally = Tally::new();
        tally.join();
        assert_eq!(tally.displayed(), None);
        assert!(tally.observe(snap(9, 1)));
        assert_eq!(tally.displayed(), Some(10));
    }

    #[test]
    fn never_shows_fewer_than_its_own_sockets() {
        let mut tally = Tally::new();
        tally.written(0, snap(0, 1));
        tally.join();
        assert!(tally.observe(snap(0, 2)));
        assert_eq!(tally.displayed().unwrap_or(i64::MIN), 1);
    }
}
