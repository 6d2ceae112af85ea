//! When to broadcast: the latest count, at most once per emit interval, stretched so a node never
//! sends more than its fan-out budget of messages per second, and stretched further while the
//! node is overloaded ([`Governor`]). Pure, so it is tested without time.

use std::time::Duration;

use tokio::time::Instant;

/// Emit pacing settings.
#[derive(Debug, Clone, Copy)]
pub struct PacingPolicy {
    /// Minimum time between two broadcasts.
    pub emit_interval: Duration,
    /// Messages per second this node may fan out.
    pub max_fanout_per_sec: u64,
}

impl PacingPolicy {
    /// The time between two broadcasts to `recipients` clients: the emit interval, or longer when
    /// the fan-out budget needs it.
    pub fn interval_for(&self, recipients: u64) -> Duration {
        let budget = Duration::from_secs_f64(recipients as f64 / self.max_fanout_per_sec.max(1) as f64);
        self.emit_interval.max(budget)
    }

    /// This policy under load: the fan-out budget `stretch` times smaller (`stretch` ≥ 1), the
    /// emit interval `stretch` times longer but at most [`MAX_INTERVAL_STRETCH`] times. A
    /// broadcast to many clients is what starves connects, so it is what waits longest; a few
    /// clients still hear every change that lasts a second.
    pub fn stretched(&self, stretch: f64) -> Self {
        let stretch = stretch.max(1.0);
        Self {
            emit_interval: self.emit_interval.mul_f64(stretch.min(MAX_INTERVAL_STRETCH)),
            max_fanout_per_sec: ((self.max_fanout_per_sec as f64 / stretch) as u64).max(1),
        }
    }
}

/// Event-loop lag at or above which the node counts as overloaded. (50 ms let a 100,000-client
/// connect storm starve handshakes again: BENCHMARKS.md.)
pub const LAG_HIGH: Duration = Duration::from_millis(20);
/// Event-loop lag at or below which (with a short queue) the node counts as calm.
pub const LAG_LOW: Duration = Duration::from_millis(5);
/// Commands (connects, disconnects, joins...) waiting for the coordinator that count as overload.
pub const QUEUE_HIGH: usize = 256;
/// The longest stretch of the emit interval: 8 × (800 ms with the default 100 ms), so a change
/// that lasts a second or more still reaches clients while it holds, not only its end.
pub const MAX_INTERVAL_STRETCH: f64 = 8.0;
/// The deepest cut of the fan-out budget: 1/32 (6,250 messages/s with the default 200,000). At
/// 1/8 six nodes sharing two cores still spent enough on broadcasts to a 100,000-client connect
/// storm to time handshakes out (BENCHMARKS.md); a node with few clients stays at the interval cap.
pub const MAX_STRETCH: f64 = 32.0;
/// While calm, the stretch halves this often.
pub const RELAX_HALF_LIFE: Duration = Duration::from_secs(1);

/// Backs the fan-out off on its own while the node is overloaded, so that connects are not
/// starved by broadcasts. Each sample of the event loop's lag (how late a periodic tick ran) and
/// of the coordinator's queue doubles the stretch when either is high; while both are low the
/// stretch halves every [`RELAX_HALF_LIFE`] back toward 1. Halving by time, not by sample, makes
/// a node whose own broadcasts are what runs late settle where a broadcast's lag doubles the
/// stretch as much as one interval of calm halves it. The last value still goes out, later.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Governor {
    stretch: f64,
    last_sample: Option<Instant>,
}

impl Default for Governor {
    fn default() -> Self {
        Self { stretch: 1.0, last_sample: None }
    }
}

impl Governor {
    /// Takes one sample at `now`: `lag` past the tick's time, `queued` commands waiting.
    pub fn observe(&mut self, now: Instant, lag: Duration, queued: usize) {
        let since = self.last_sample.map_or(Duration::ZERO, |last| now.saturating_duration_since(last));
        self.last_sample = Some(now);
        if lag >= LAG_HIGH || queued >= QUEUE_HIGH {
            self.stretch = (self.stretch * 2.0).min(MAX_STRETCH);
        } else if lag <= LAG_LOW && queued < QUEUE_HIGH / 4 {
            let halvings = since.as_secs_f64() / RELAX_HALF_LIFE.as_secs_f64();
            self.stretch = (self.stretch * 0.5_f64.powf(halvings)).max(1.0);
        }
    }

    /// How many times longer than the policy's intervals broadcasts wait now (≥ 1).
    pub fn stretch(&self) -> f64 {
        self.stretch
    }
}

/// What was last broadcast (a count, or a room's counts), and when.
#[derive(Debug, Clone)]
pub struct Pacer<T> {
    last_emitted: Option<T>,
    last_emit_at: Instant,
}

impl<T: PartialEq + Copy> Pacer<T> {
    /// Nothing broadcast yet.
    pub fn new(now: Instant) -> Self {
        Self { last_emitted: None, last_emit_at: now }
    }

    /// Whether `value` should be broadcast now to `recipients` clients.
    pub fn due(&self, value: T, recipients: u64, policy: &PacingPolicy, now: Instant) -> bool {
        self.last_emitted != Some(value)
            && now.duration_since(self.last_emit_at) >= policy.interval_for(recipients)
    }

    /// Whether `value` is what was last broadcast.
    pub fn sent(&self, value: T) -> bool {
        self.last_emitted == Some(value)
    }

    /// `value` went out at `now`.
    pub fn emitted(&mut self, value: T, now: Instant) {
        self.last_emitted = Some(value);
        self.last_emit_at = now;
    }

    /// A newcomer was greeted with `value` alone. If the others were last sent something else,
    /// the newcomer now holds a value they never got; forget what was sent, so the next due
    /// broadcast goes out even if the count settles back to it, and reaches the newcomer too.
    pub fn greeted(&mut self, value: T) {
        if self.last_emitted != Some(value) {
            self.last_emitted = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: PacingPolicy =
        PacingPolicy { emit_interval: Duration::from_millis(100), max_fanout_per_sec: 1000 };

    #[test]
    fn the_budget_stretches_the_interval() {
        assert_eq!(POLICY.interval_for(10), Duration::from_millis(100));
        assert_eq!(POLICY.interval_for(500), Duration::from_millis(500));
    }

    #[test]
    fn an_unchanged_value_is_not_sent_again_until_a_newcomer_got_another() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        let later = start + Duration::from_secs(1);
        assert!(pacer.due(5, 1, &POLICY, later));
        pacer.emitted(5, later);
        let much_later = later + Duration::from_secs(1);
        assert!(!pacer.due(5, 1, &POLICY, much_later));
        pacer.greeted(5);
        assert!(!pacer.due(5, 1, &POLICY, much_later), "greeted with what everyone has");
        pacer.greeted(6);
        assert!(pacer.due(5, 1, &POLICY, much_later), "the newcomer saw 6; 5 must reach it");
    }

    #[test]
    fn overload_doubles_the_stretch_up_to_a_bound_and_calm_halves_it_per_second() {
        let start = Instant::now();
        let at = |ms: u64| start + Duration::from_millis(ms);
        let mut governor = Governor::default();
        governor.observe(at(0), Duration::from_millis(1), 0);
        assert_eq!(governor.stretch(), 1.0, "a calm node is not slowed");
        governor.observe(at(25), LAG_HIGH, 0);
        assert_eq!(governor.stretch(), 2.0);
        governor.observe(at(50), Duration::ZERO, QUEUE_HIGH);
        assert_eq!(governor.stretch(), 4.0, "a long queue is overload too");
        for tick in 3..13 {
            governor.observe(at(tick * 25), Duration::from_secs(1), 0);
        }
        assert_eq!(governor.stretch(), MAX_STRETCH);
        governor.observe(at(2000), Duration::from_millis(10), 0);
        assert_eq!(governor.stretch(), MAX_STRETCH, "between the thresholds: unchanged");
        governor.observe(at(3000), Duration::ZERO, 0);
        assert!((governor.stretch() - MAX_STRETCH / 2.0).abs() < 1e-9, "one calm second halves it");
        for tick in 0..=40 {
            governor.observe(at(3000 + tick * 25), Duration::ZERO, 0);
        }
        assert!(
            (governor.stretch() - MAX_STRETCH / 4.0).abs() < 1e-9,
            "one more second, sampled every 25 ms"
        );
        governor.observe(at(20_000), Duration::ZERO, 0);
        assert_eq!(governor.stretch(), 1.0, "never below 1");
        let stretched = POLICY.stretched(4.0);
        assert_eq!(stretched.interval_for(10), Duration::from_millis(400));
        assert_eq!(stretched.interval_for(500), Duration::from_millis(2000));
    }

    #[test]
    fn under_full_load_few_recipients_wait_at_most_the_interval_cap_and_many_wait_for_the_budget() {
        let stretched = POLICY.stretched(MAX_STRETCH);
        assert_eq!(stretched.interval_for(10), Duration::from_millis(800), "few: 8 × 100 ms");
        assert_eq!(stretched.interval_for(20), Duration::from_millis(800));
        let many = stretched.interval_for(1000);
        assert!(many >= Duration::from_secs(32), "many: 1000 at 1000/32 per second, {many:?}");
    }

    #[test]
    fn a_change_waits_for_the_interval() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        pacer.emitted(1, start);
        assert!(!pacer.due(2, 1, &POLICY, start + Duration::from_millis(99)));
        assert!(pacer.due(2, 1, &POLICY, start + Duration::from_millis(100)));
    }
}
