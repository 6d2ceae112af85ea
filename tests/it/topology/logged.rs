//! A node as a child process whose log (JSON lines) the test reads: runtime problems must be
//! one clear line, and this is where a test sees it.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{on_free_port, presence};

/// `rollcall serve` with its log captured, killed on drop.
pub struct LoggedNode {
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    lines: Arc<Mutex<Vec<String>>>,
}

impl LoggedNode {
    /// Starts the binary with `env` (JSON logs) and waits until `/readyz` answers 200.
    pub async fn start(env: &HashMap<String, String>) -> Self {
        on_free_port("rollcall serve", |port| Self::try_start(env.clone(), port)).await
    }

    async fn try_start(env: HashMap<String, String>, port: u16) -> Option<Self> {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
            .arg("serve")
            .env_clear()
            .envs(env)
            .env("ROLLCALL_PORT", port.to_string())
            .env("ROLLCALL_LOG_FORMAT", "json")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn rollcall");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut reader = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let sink = lines.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = reader.next_line().await {
                sink.lock().expect("log lock").push(line);
            }
        });
        let mut node = Self { child, port, lines };
        let started = Instant::now();
        loop {
            let ready = reqwest::get(format!("{}/readyz", node.url())).await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Some(node);
            }
            if node.child.try_wait().ok().flatten().is_some() {
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(15),
                "node not ready in 15 s; log:\n{}",
                node.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Everything logged so far, one line per entry.
    pub fn log(&self) -> String {
        self.lines.lock().expect("log lock").join("\n")
    }

    /// Log lines whose message contains `message`.
    pub fn lines_with(&self, message: &str) -> Vec<String> {
        let lines = self.lines.lock().expect("log lock");
        lines.iter().filter(|line| line.contains(message)).cloned().collect()
    }

    /// Waits until the node reports `degraded` and has logged `message`; returns that line.
    pub async fn degraded_with(&self, message: &str) -> String {
        let started = Instant::now();
        loop {
            let logged = self.lines_with(message);
            if !logged.is_empty() && presence(&self.url()).await["degraded"] == true {
                return logged[0].clone();
            }
            let waited = started.elapsed();
            assert!(
                waited < Duration::from_secs(10),
                "no degraded state with {message:?} in {waited:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
