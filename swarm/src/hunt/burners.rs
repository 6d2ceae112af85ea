//! CPU burners: busy-loop processes at normal priority (this binary, re-executed with a hidden
//! flag), so nodes run on a busy machine where races that need a preempted thread happen.
//! The hunt kills them by PID when it ends; a burner also stops by itself when its parent is
//! gone or its time bound passes.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::process::{Child, Command};

/// The hidden flag that turns `swarm` into a burner (its value: the parent's pid).
pub const BURNER_FLAG: &str = "--burner-of";
/// How often a burner checks its parent and its bound.
const CHECK_EVERY: Duration = Duration::from_millis(50);

/// The running burners.
#[derive(Debug, Default)]
pub struct Burners {
    children: Vec<Child>,
}

impl Burners {
    /// Starts `count` burners that stop by themselves after `bound`.
    pub fn spawn(count: usize, bound: Duration) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("cannot find this executable")?;
        let mut burners = Burners::default();
        for _ in 0..count {
            let child = Command::new(&exe)
                .args(["swarm", BURNER_FLAG, &std::process::id().to_string()])
                .args(["--max-duration", &format!("{}ms", bound.as_millis())])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .kill_on_drop(true)
                .process_group(0)
                .spawn()
                .context("cannot start a CPU burner")?;
            burners.children.push(child);
        }
        Ok(burners)
    }

    /// The burners' process ids.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().filter_map(Child::id).collect()
    }

    /// Kills every burner (SIGKILL to its own PID) and reaps it.
    pub async fn stop(&mut self) {
        for mut child in self.children.drain(..) {
            let _ = child.kill().await;
        }
    }
}

/// A burner's whole life: spin until the parent `parent` is gone or `bound` has passed.
pub fn burn(parent: u32, bound: Duration) {
    let started = Instant::now();
    let mut state: u64 = u64::from(std::process::id());
    loop {
        let slice = Instant::now();
        while slice.elapsed() < CHECK_EVERY {
            for _ in 0..10_000 {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            }
            std::hint::black_box(state);
        }
        if std::os::unix::process::parent_id() != parent || started.elapsed() >= bound {
            return;
        }
    }
}
