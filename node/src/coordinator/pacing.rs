//! When to broadcast: the latest count, at most once per emit interval, stretched so a node never
//! sends more than its fan-out budget of messages per second. Pure, so it is tested without time.

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
    fn a_change_waits_for_the_interval() {
        let start = Instant::now();
        let mut pacer = Pacer::new(start);
        pacer.emitted(1, start);
        assert!(!pacer.due(2, 1, &POLICY, start + Duration::from_millis(99)));
        assert!(pacer.due(2, 1, &POLICY, start + Duration::from_millis(100)));
    }
}
