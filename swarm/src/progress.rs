//! The progress bar: drawn on stderr only when stderr is a terminal, silent otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Connected clients against the target, with the current phase as its message.
#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar towards `clients` connected, hidden unless stderr is a terminal.
    pub fn new(clients: u64) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { bar: ProgressBar::hidden() };
        }
        let bar = ProgressBar::new(clients);
        let template = "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} connected {prefix}  {msg}";
        if let Ok(style) = ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Self { bar }
    }

    /// Shows what the swarm is doing now.
    pub fn phase(&self, phase: &'static str) {
        self.bar.set_message(phase);
    }

    /// Shows how many clients are connected and how many connects failed.
    pub fn update(&self, connected: u64, failed: u64) {
        self.bar.set_position(connected);
        if failed > 0 {
            self.bar.set_prefix(format!("{failed} failed"));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
