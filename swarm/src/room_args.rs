//! The room flags of the load scenarios: their checks, and the [`RoomPlan`] they make.

use anyhow::bail;

use super::rooms::{MAX_ROOMS, RoomPlan};
use super::{Scenario, SwarmArgs};

/// The room prefix of the load scenarios when `--room-prefix` is not given.
const DEFAULT_ROOM_PREFIX: &str = "room-";
/// Longest `--room-prefix`, so that `<prefix><index>` stays a valid room name (256 bytes).
const MAX_PREFIX_BYTES: usize = 240;

/// Checks `--rooms` and `--room-prefix` (every scenario, the hunt included).
pub fn validate_room_names(args: &SwarmArgs) -> anyhow::Result<()> {
    if args.rooms > MAX_ROOMS {
        bail!("--rooms must be at most {MAX_ROOMS}");
    }
    let prefix = args.room_prefix.as_deref().unwrap_or(DEFAULT_ROOM_PREFIX);
    if prefix.len() > MAX_PREFIX_BYTES || prefix.chars().any(char::is_control) {
        bail!("--room-prefix must be at most {MAX_PREFIX_BYTES} bytes without control characters");
    }
    Ok(())
}

/// Checks every room flag of a load scenario.
pub fn validate_rooms(args: &SwarmArgs) -> anyhow::Result<()> {
    validate_room_names(args)?;
    if !(args.zipf_s.is_finite() && args.zipf_s >= 0.0) {
        bail!("--zipf-s must be a number of 0 or more");
    }
    if args.scenario == Scenario::Move {
        if args.rooms < 2 {
            bail!("the move scenario needs --rooms 2 or more");
        }
        if !(args.move_rate.is_finite() && args.move_rate > 0.0) {
            bail!("--move-rate must be above 0 for the move scenario");
        }
    }
    Ok(())
}

/// The run's rooms, if `--rooms` asks for any.
pub fn room_plan(args: &SwarmArgs) -> Option<RoomPlan> {
    (args.rooms > 0).then(|| RoomPlan {
        count: args.rooms,
        distribution: args.room_distribution,
        zipf_s: args.zipf_s,
        prefix: args.room_prefix.clone().unwrap_or_else(|| DEFAULT_ROOM_PREFIX.to_owned()),
        seed: args.seed.unwrap_or_else(super::clock_seed),
    })
}
