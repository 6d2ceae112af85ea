//! Rooms for the load scenarios: which room each client joins (uniform or Zipf over `--rooms`
//! rooms named `<prefix><k>`), and the names. A client keeps only the room's index (a `u32`).

use clap::ValueEnum;
use rand::Rng;
use serde::{Deserialize, Serialize};

/// Index of "no room": a client without a room, or between a `leave` and a `join`.
pub const NO_ROOM: u32 = u32::MAX;
/// Most rooms a run may spread its clients over.
pub const MAX_ROOMS: u32 = 1_000_000;

/// How clients are spread over the rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Every room equally likely.
    Uniform,
    /// Room k (0-based) with a weight of 1 / (k + 1)^s: `room-0` is the largest.
    Zipf,
}

impl Distribution {
    /// Its name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Distribution::Uniform => "uniform",
            Distribution::Zipf => "zipf",
        }
    }
}

/// The rooms of a run, as the parent gives them to every worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoomPlan {
    /// Rooms (`--rooms`).
    pub count: u32,
    /// How clients are spread over them.
    pub distribution: Distribution,
    /// Zipf exponent (`--zipf-s`).
    pub zipf_s: f64,
    /// Room names are `<prefix><index>`.
    pub prefix: String,
    /// Seed of the room choices (each worker draws from its own stream of it).
    pub seed: u64,
}

impl RoomPlan {
    /// The name of room `index`.
    pub fn name(&self, index: u32) -> String {
        format!("{}{index}", self.prefix)
    }

    /// The index of a room name of this plan, if it is one.
    pub fn index_of(&self, name: &str) -> Option<u32> {
        index_of(&self.prefix, name, self.count)
    }
}

/// The index in `<prefix><index>` when it is below `count`; no allocation.
pub fn index_of(prefix: &str, name: &str, count: u32) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || digits.len() > 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if digits.len() > 1 && digits.starts_with('0') {
        return None;
    }
    digits.parse().ok().filter(|&index| index < count)
}

/// Draws room indices by the plan's distribution.
#[derive(Debug, Clone)]
pub struct RoomSampler {
    count: u32,
    /// Zipf only: cumulative weights, normalised so the last is 1.
    cumulative: Vec<f64>,
}

impl RoomSampler {
    /// A sampler for `plan` (the Zipf table takes 8 bytes per room).
    pub fn new(plan: &RoomPlan) -> Self {
        let cumulative = match plan.distribution {
            Distribution::Uniform => Vec::new(),
            Distribution::Zipf => zipf_table(plan.count, plan.zipf_s),
        };
        Self { count: plan.count.max(1), cumulative }
    }

    /// One room index.
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        if self.cumulative.is_empty() {
            return rng.random_range(0..self.count);
        }
        let ticket: f64 = rng.random();
        let index = self.cumulative.partition_point(|&weight| weight <= ticket);
        (index as u32).min(self.count - 1)
    }

    /// A room index other than `current` (when there are two rooms or more): a few draws,
    /// then the next room.
    pub fn sample_other(&self, current: u32, rng: &mut impl Rng) -> u32 {
        for _ in 0..8 {
            let room = self.sample(rng);
            if room != current || self.count == 1 {
                return room;
            }
        }
        (current + 1) % self.count
    }
}

/// Cumulative Zipf weights over `count` ranks with exponent `s`, the last exactly 1.
fn zipf_table(count: u32, s: f64) -> Vec<f64> {
    let mut cumulative = Vec::with_capacity(count as usize);
    let mut sum = 0.0;
    for rank in 1..=count.max(1) {
        sum += f64::from(rank).powf(-s);
        cumulative.push(sum);
    }
    for weight in &mut cumulative {
        *weight /= sum;
    }
    if let Some(last) = cumulative.last_mut() {
        *last = 1.0;
    }
    cumulative
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn plan(count: u32, distribution: Distribution, zipf_s: f64) -> RoomPlan {
        RoomPlan { count, distribution, zipf_s, prefix: "room-".to_owned(), seed: 7 }
    }

    fn histogram(plan: &RoomPlan, draws: usize, seed: u64) -> Vec<usize> {
        let sampler = RoomSampler::new(plan);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut counts = vec![0; plan.count as usize];
        for _ in 0..draws {
            counts[sampler.sample(&mut rng) as usize] += 1;
        }
        counts
    }

    #[test]
    fn the_same_seed_draws_the_same_rooms() {
        let zipf = plan(2_000, Distribution::Zipf, 1.0);
        assert_eq!(histogram(&zipf, 5_000, 3), histogram(&zipf, 5_000, 3));
        assert_ne!(histogram(&zipf, 5_000, 3), histogram(&zipf, 5_000, 4));
    }

    #[test]
    fn zipf_follows_one_over_k_to_the_s() {
        // 2,000 rooms, s = 1: H(2000) ≈ 8.178, so room 0 gets 12.2 %, room 1 half of that, room 9 a tenth.
        let draws = 200_000;
        let counts = histogram(&plan(2_000, Distribution::Zipf, 1.0), draws, 11);
        let share = |room: usize| counts[room] as f64 / draws as f64;
        assert!((share(0) - 0.1223).abs() < 0.005, "room 0: {}", share(0));
        assert!((counts[0] as f64 / counts[1] as f64 - 2.0).abs() < 0.1, "{} vs {}", counts[0], counts[1]);
        assert!((counts[0] as f64 / counts[9] as f64 - 10.0).abs() < 1.0, "{} vs {}", counts[0], counts[9]);
        let tail: usize = counts[1_000..].iter().sum();
        assert!((tail as f64 / draws as f64 - 0.0847).abs() < 0.005, "the upper half holds ln(2)/H ≈ 8.5 %");
        // 100,000 clients over 2,000 rooms: the largest room holds thousands.
        assert!(counts[0] / 2 > 5_000, "{}", counts[0]);
        // A steeper exponent concentrates more.
        let steep = histogram(&plan(2_000, Distribution::Zipf, 1.5), draws, 11);
        assert!(steep[0] > 2 * counts[0], "{} vs {}", steep[0], counts[0]);
    }

    #[test]
    fn uniform_spreads_evenly_and_zipf_s_zero_is_uniform() {
        let draws = 100_000;
        for distribution in [plan(20, Distribution::Uniform, 1.0), plan(20, Distribution::Zipf, 0.0)] {
            let counts = histogram(&distribution, draws, 5);
            for (room, &count) in counts.iter().enumerate() {
                assert!((4_500..5_500).contains(&count), "{distribution:?} room {room}: {count}");
            }
        }
    }

    #[test]
    fn another_room_is_another_room() {
        let sampler = RoomSampler::new(&plan(3, Distribution::Zipf, 3.0));
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for _ in 0..1_000 {
            assert_ne!(sampler.sample_other(0, &mut rng), 0);
        }
        let single = RoomSampler::new(&plan(1, Distribution::Uniform, 1.0));
        assert_eq!(single.sample_other(0, &mut rng), 0);
    }

    #[test]
    fn names_and_indices() {
        let plan = plan(30, Distribution::Uniform, 1.0);
        assert_eq!(plan.name(7), "room-7");
        assert_eq!(plan.index_of("room-7"), Some(7));
        assert_eq!(plan.index_of("room-29"), Some(29));
        for other in ["room-30", "room-", "room-07", "room-+7", "hall-7", "room-7 ", "room-99999999999"] {
            assert_eq!(plan.index_of(other), None, "{other}");
        }
    }
}
