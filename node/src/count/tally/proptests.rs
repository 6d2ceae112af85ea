//! Property tests of [`Tally`] against a model of one scope: the backend (this node's share as
//! stored, the other nodes' part, a version that only grows, bumps only when something changed
//! or the node registers, and honours the writer's floor, as the scripts do), a network that
//! delays, reorders, duplicates, loses and forges announcements, and this node driving the tally
//! the way the coordinator should (announcements held back while a write is in flight, and after
//! a resubscription until the reply of a write sent after it).
//!
//! `PROPTEST_CASES=20000 cargo test -p rollcall-node tally::proptests` for a long run.

use std::collections::{BTreeMap, HashSet, VecDeque};

use proptest::prelude::*;
use proptest::test_runner::{Config, contextualize_config};

use super::Tally;
use crate::presence::{Counts, Snapshot};

/// Cases per run unless `PROPTEST_CASES` says otherwise.
const CASES: u32 = 256;

#[derive(Debug, Clone)]
enum Op {
    /// This node's own sockets change (joins, leaves).
    Local(i8, i8),
    /// Another node's write changes the count.
    Others(i8, i8),
    /// This node starts a write of its part (if none is in flight); it lands now or at its reply.
    Flush { lands_now: bool },
    /// The write's reply arrives.
    Reply,
    /// The write fails; it landed (the reply was lost) or not.
    Fail { landed: bool },
    /// The n-th announcement in transit arrives (`ordered` cases: always the oldest).
    Deliver(usize),
    /// An announcement that already arrived arrives again.
    Duplicate(usize),
    /// Someone publishes a count from the future.
    Forge { ahead: u16, connections: i16, users: i16, reaped: bool },
    /// Another node reaps this one (its share is removed; the announcement names it).
    Reap,
    /// The subscription broke and came back: announcements in transit are lost (mask).
    Resubscribe { lost: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (-3i8..=4, -3i8..=4).prop_map(|(c, u)| Op::Local(c, u)),
        3 => (-3i8..=4, -3i8..=4).prop_map(|(c, u)| Op::Others(c, u)),
        3 => any::<bool>().prop_map(|lands_now| Op::Flush { lands_now }),
        3 => Just(Op::Reply),
        1 => any::<bool>().prop_map(|landed| Op::Fail { landed }),
        5 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => (1u16..1000, -20i16..200, -20i16..200, any::<bool>())
            .prop_map(|(ahead, connections, users, reaped)| Op::Forge { ahead, connections, users, reaped }),
        1 => Just(Op::Reap),
        1 => any::<u64>().prop_map(|lost| Op::Resubscribe { lost }),
    ]
}

#[derive(Debug, Clone, Copy)]
struct Announced {
    snapshot: Snapshot,
    reaped: bool,
}

/// The backend's view of the scope.
#[derive(Debug, Default)]
struct Backend {
    others: Counts,
    stored: Counts,
    registered: bool,
    version: u64,
    /// This node's share as counted at each version the backend produced.
    share_at: BTreeMap<u64, Counts>,
}

impl Backend {
    fn total(&self) -> Counts {
        self.others.adjusted(self.stored, Counts::default())
    }

    /// One step; returns the announcement when it changed something (or was forced).
    fn step(&mut self, floor: u64, changed: bool, reaped: bool) -> Option<Announced> {
        if !changed {
            return None;
        }
        self.version = self.version.max(floor) + 1;
        self.share_at.insert(self.version, self.stored);
        Some(Announced { snapshot: self.snapshot(), reaped })
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot { counts: self.total(), version: self.version }
    }
}

#[derive(Debug)]
struct InFlight {
    share: Counts,
    floor: u64,
    reply: Option<Snapshot>,
    /// Sent before the last resubscription: its reply cannot vouch for what was missed since.
    before_resubscription: bool,
}

/// The scope as a whole: backend, network, and this node with its tally.
#[derive(Debug, Default)]
struct World {
    backend: Backend,
    transit: VecDeque<Announced>,
    delivered: Vec<Announced>,
    ordered: bool,
    tally: Tally,
    local: Counts,
    in_flight: Option<InFlight>,
    held: VecDeque<Announced>,
    resyncing: bool,
    /// A write landed but its reply was lost, and no reply came since: the share counted in
    /// announcements is not known.
    unknown: bool,
    forged: HashSet<u64>,
}

fn shifted(counts: Counts, connections: i8, users: i8) -> Counts {
    Counts {
        connections: (counts.connections + i64::from(connections)).max(0),
        users: (counts.users + i64::from(users)).max(0),
    }
}

impl World {
    fn publish(&mut self, announced: Option<Announced>) {
        self.transit.extend(announced);
    }

    fn land(&mut self) {
        let Some(flight) = self.in_flight.as_mut() else { return };
        if flight.reply.is_some() {
            return;
        }
        let backend = &mut self.backend;
        let changed = !backend.registered || backend.stored != flight.share;
        backend.registered = true;
        backend.stored = flight.share;
        let announced = backend.step(flight.floor, changed, false);
        flight.reply = Some(backend.snapshot());
        self.publish(announced);
    }

    fn receive(&mut self, announced: Announced) {
        if self.in_flight.is_some() || self.resyncing {
            self.held.push_back(announced);
        } else {
            self.apply(announced);
        }
    }

    fn apply(&mut self, announced: Announced) {
        if announced.reaped {
            self.tally.observe_reaped(announced.snapshot);
        } else {
            self.tally.observe(announced.snapshot);
        }
    }

    fn release_held(&mut self) {
        if !self.resyncing {
            while let Some(announced) = self.held.pop_front() {
                self.apply(announced);
            }
        }
    }

    fn run(&mut self, op: &Op) {
        let version_before = self.tally.version();
        let was_forged = self.forged.contains(&version_before);
        let mut rewound = false;
        match *op {
            Op::Local(c, u) => self.local = shifted(self.local, c, u),
            Op::Others(c, u) => {
                let others = shifted(self.backend.others, c, u);
                let changed = others != self.backend.others;
                self.backend.others = others;
                let announced = self.backend.step(0, changed, false);
                self.publish(announced);
            }
            Op::Flush { lands_now } => {
                if self.in_flight.is_none() {
                    let floor = self.tally.version();
                    self.in_flight = Some(InFlight {
                        share: self.local,
                        floor,
                        reply: None,
                        before_resubscription: false,
                    });
                    if lands_now {
                        self.land();
                    }
                }
            }
            Op::Reply => rewound = self.reply(),
            Op::Fail { landed } => {
                if landed {
                    self.land();
                }
                if let Some(flight) = self.in_flight.take() {
                    self.unknown |= flight.reply.is_some();
                    self.release_held();
                }
            }
            Op::Deliver(n) => {
                let at = if self.ordered { 0 } else { n % self.transit.len().max(1) };
                if let Some(announced) = self.transit.remove(at) {
                    self.delivered.push(announced);
                    self.receive(announced);
                }
            }
            Op::Duplicate(n) => {
                if !self.delivered.is_empty() {
                    let announced = self.delivered[n % self.delivered.len()];
                    self.receive(announced);
                }
            }
            Op::Forge { ahead, connections, users, reaped } => {
                let version = self.backend.version.max(self.tally.version()) + u64::from(ahead);
                let counts = Counts { connections: connections.into(), users: users.into() };
                self.forged.insert(version);
                self.transit.push_back(Announced { snapshot: Snapshot { counts, version }, reaped });
            }
            Op::Reap => {
                if self.backend.registered {
                    self.backend.registered = false;
                    self.backend.stored = Counts::default();
                    let announced = self.backend.step(0, true, true);
                    self.publish(announced);
                }
            }
            Op::Resubscribe { lost } => {
                let mut index = 0;
                self.transit.retain(|_| {
                    index += 1;
                    lost & (1 << ((index - 1) % 64)) == 0
                });
                self.resyncing = true;
                if let Some(flight) = self.in_flight.as_mut() {
                    flight.before_resubscription = true;
                }
            }
        }
        self.check(version_before, was_forged, rewound);
    }

    /// Delivers the reply of the write in flight; true if it rewound the shown version.
    fn reply(&mut self) -> bool {
        self.land();
        let Some(flight) = self.in_flight.take() else { return false };
        let reply = flight.reply.expect("landed");
        let rewound = self.tally.written(flight.share, reply);
        self.unknown = false;
        // Only a write sent after the resubscription can vouch for what was missed. (The
        // coordinator ends the resync on any reply: see `coordinator::tests::proptests`.)
        self.resyncing &= flight.before_resubscription;
        self.release_held();
        rewound
    }

    fn check(&self, version_before: u64, was_forged: bool, rewound: bool) {
        let version = self.tally.version();
        if rewound {
            assert!(was_forged, "a reply rewound a genuine version {version_before} to {version}");
        } else {
            assert!(version >= version_before, "the version went back from {version_before} to {version}");
        }
        let share = self.tally.share_in_cluster;
        assert!(share.connections >= 0 && share.users >= 0, "negative share {share:?}");
        if let Some(shown) = self.tally.displayed(self.local) {
            assert!(
                shown.connections >= self.local.connections && shown.users >= self.local.users,
                "shown {shown:?} below this node's own part {:?}",
                self.local
            );
        }
        self.check_share_is_known();
    }

    /// With announcements delivered in publish order and no write of unknown outcome, the share
    /// counted in the shown count is exactly this node's share in the accepted snapshot.
    fn check_share_is_known(&self) {
        let Some(accepted) = self.tally.cluster else { return };
        if !self.ordered || self.unknown || self.forged.contains(&accepted.version) {
            return;
        }
        let counted = self.backend.share_at.get(&accepted.version).copied();
        assert_eq!(
            Some(self.tally.share_in_cluster),
            counted,
            "the share counted in the shown count (version {}) is not the one the backend holds",
            accepted.version
        );
    }

    /// Quiet: every announcement arrives, the write in flight is answered, one write releases
    /// what a resubscription held back, one more lands and is answered (overruling any forged
    /// count), and everything they announced arrives.
    fn settle(&mut self) {
        while !self.transit.is_empty() {
            self.run(&Op::Deliver(0));
        }
        self.run(&Op::Reply);
        for _ in 0..2 {
            self.run(&Op::Flush { lands_now: true });
            self.run(&Op::Reply);
        }
        while !self.transit.is_empty() {
            self.run(&Op::Deliver(0));
        }
        let truth = self.backend.others.adjusted(self.local, Counts::default());
        assert_eq!(self.tally.displayed(self.local), Some(truth), "not exact after quiet");
        assert_eq!(self.tally.version(), self.backend.version, "not at the backend's version");
    }
}

proptest! {
    #![proptest_config(contextualize_config(Config { cases: CASES, failure_persistence: None, ..Config::default() }))]

    /// Exact after quiet; the version never goes back unless a reply overrules a forged one; the
    /// shown count is never below this node's own part; the share is never negative; with
    /// announcements in publish order, the share counted is always the one the backend holds.
    #[test]
    fn the_tally_follows_the_backend(ordered: bool, ops in proptest::collection::vec(op(), 0..80)) {
        let mut world = World { ordered, ..World::default() };
        for op in &ops {
            world.run(op);
        }
        world.settle();
    }
}

/// Regression: a reply at the same version as an accepted forged count replaces it. Shrunk from `the_tally_follows_the_backend`: this node's
/// write lands at v1; a count forged at v3 arrives; two changes of other nodes bring the
/// backend to v3 too (their announcement is rejected: not newer); this node's next write
/// changes nothing, so its reply is the backend's v3, which must be taken (it once was not, and
/// the forged count stayed until the scope changed again).
#[test]
fn a_reply_at_the_version_of_a_forged_count_overrules_it() {
    let mut tally = Tally::new();
    let counts = |connections| Counts { connections, users: connections };
    tally.written(counts(1), Snapshot { counts: counts(1), version: 1 });
    assert!(tally.observe(Snapshot { counts: counts(-50), version: 3 }), "forged, accepted at first");
    assert!(!tally.observe(Snapshot { counts: counts(3), version: 3 }), "genuine v3: not newer");
    tally.written(counts(1), Snapshot { counts: counts(3), version: 3 });
    assert_eq!(tally.displayed(counts(1)), Some(counts(3)), "the backend's reply is authoritative");
}
