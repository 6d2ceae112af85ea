//! A per-socket token bucket for `join` / `leave` events, so one client cannot make a node (and
//! Redis) work without bound by flipping rooms.

use std::sync::Mutex;
use std::time::Instant;

/// Up to `burst` events at once, refilled at `per_sec`.
#[derive(Debug)]
pub struct EventBudget {
    per_sec: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl EventBudget {
    /// A full bucket.
    pub fn new(per_sec: u32) -> Self {
        let per_sec = f64::from(per_sec.max(1));
        let burst = per_sec * 2.0;
        Self { per_sec, burst, state: Mutex::new((burst, Instant::now())) }
    }

    /// Takes one token; false when the socket is over its budget.
    pub fn take(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = &mut *state;
        let now = Instant::now();
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_sec).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_refused() {
        let budget = EventBudget::new(5);
        let allowed = (0..100).filter(|_| budget.take()).count();
        assert!((10..=11).contains(&allowed), "burst of twice the rate: {allowed}");
    }
}
