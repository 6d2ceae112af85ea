//! Sentinel as operators run it: a primary, a replica and three sentinels on loopback ports,
//! each a child process killed on drop.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

use crate::helpers::{eventually, on_free_port};

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "rollcall-primary";

/// One `redis-server` or `redis-sentinel` process on a loopback port.
pub struct Instance {
    child: Option<Child>,
    /// Its port on 127.0.0.1.
    pub port: u16,
    program: &'static str,
    args: Vec<String>,
}

impl Instance {
    /// Starts `program` with `args(port)` on a free port and waits until it answers PING.
    pub async fn start(program: &'static str, args: impl Fn(u16) -> Vec<String>) -> Self {
        on_free_port(program, |port| Self::try_start(program, args(port), port)).await
    }

    async fn try_start(program: &'static str, args: Vec<String>, port: u16) -> Option<Self> {
        let child = Command::new(program)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server and redis-sentinel must be installed (the test script installs them)");
        let mut instance = Self { child: Some(child), port, program, args };
        let started = Instant::now();
        loop {
            if instance.try_cmd::<String>(&["PING"]).await.is_ok() {
                return Some(instance);
            }
            if instance.child.as_mut().and_then(|c| c.try_wait().ok().flatten()).is_some() {
                return None;
            }
            assert!(started.elapsed() < Duration::from_secs(10), "{program} on {port} did not answer PING");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts the same program with the same arguments on the same port again.
    pub async fn restart(&mut self) {
        let (program, args) = (self.program, self.args.clone());
        *self = Self::try_start(program, args, self.port).await.expect("restarts on its port");
    }

    /// Whether the process runs (not killed by the test).
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL, and waits for the exit.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Runs one command; the reply or the error.
    pub async fn try_cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port))?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)));
        let mut conn = client.get_multiplexed_async_connection_with_config(&config).await?;
        let mut cmd = redis::cmd(args[0]);
        for arg in &args[1..] {
            cmd.arg(*arg);
        }
        cmd.query_async(&mut conn).await
    }

    /// Runs one command that must succeed.
    pub async fn cmd<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        self.try_cmd(args).await.unwrap_or_else(|e| panic!("{args:?} on port {}: {e}", self.port))
    }

    /// The first word of `ROLE`: "master", "slave" or "sentinel" (`None` while unreachable).
    pub async fn role(&self) -> Option<String> {
        let reply: redis::Value = self.try_cmd(&["ROLE"]).await.ok()?;
        match reply {
            redis::Value::Array(items) => items.first().and_then(|v| redis::from_redis_value(v.clone()).ok()),
            _ => None,
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// A plain `redis-server` without persistence, plus `extra` arguments. A replica's full sync
/// loads straight from the socket, so no RDB file lands in the working directory.
pub async fn redis_server(extra: &[String]) -> Instance {
    let extra = extra.to_vec();
    Instance::start("redis-server", move |port| {
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--repl-diskless-load",
            "swapdb",
        ]
        .map(str::to_owned)
        .to_vec();
        // Whatever Redis still writes (an RDB after a role change) goes to the temp dir.
        args.extend(["--dir".to_owned(), std::env::temp_dir().display().to_string()]);
        args.extend(extra.iter().cloned());
        args
    })
    .await
}

/// A primary, a replica and three sentinels with a quorum of two, failing over within
/// seconds (`down-after-milliseconds 1000`).
pub struct SentinelSet {
    /// The primary when the set starts.
    pub primary: Instance,
    /// Its replica; it replicates as the ACL user `replication`, so a test can cut it off.
    pub replica: Instance,
    /// Three sentinels.
    pub sentinels: Vec<Instance>,
    dir: PathBuf,
}

impl SentinelSet {
    /// Starts everything and waits until every sentinel knows the replica and the other two.
    pub async fn start(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rollcall-sentinel-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("sentinel dir");
        let primary = redis_server(&[]).await;
        primary
            .cmd::<()>(&["ACL", "SETUSER", "replication", "on", ">replication", "+@all", "~*", "&*"])
            .await;
        let replica = redis_server(
            &["--replicaof", "127.0.0.1", &primary.port.to_string()]
                .into_iter()
                .chain(["--masteruser", "replication", "--masterauth", "replication"])
                .map(str::to_owned)
                .collect::<Vec<_>>(),
        )
        .await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(sentinel(&dir, primary.port).await);
        }
        let set = Self { primary, replica, sentinels, dir };
        set.wait_until_monitored().await;
        set
    }

    /// `redis_sentinels` for a node: `127.0.0.1:<port>,...`.
    pub fn sentinels_setting(&self) -> String {
        self.sentinels.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect::<Vec<_>>().join(",")
    }

    /// Until each sentinel sees one replica (in sync) and two other sentinels: before that, a
    /// failover could not gather its quorum.
    async fn wait_until_monitored(&self) {
        eventually("sentinels know each other and the replica", Duration::from_secs(20), || async {
            for sentinel in &self.sentinels {
                let info: Vec<String> = match sentinel.try_cmd(&["SENTINEL", "MASTER", MASTER]).await {
                    Ok(info) => info,
                    Err(_) => return false,
                };
                let field = |name: &str| info.iter().position(|f| f == name).and_then(|i| info.get(i + 1));
                if field("num-slaves").map(String::as_str) != Some("1")
                    || field("num-other-sentinels").map(String::as_str) != Some("2")
                {
                    return false;
                }
            }
            let link: String = self.replica.cmd(&["INFO", "replication"]).await;
            link.contains("master_link_status:up")
        })
        .await;
    }
}

impl Drop for SentinelSet {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One sentinel with its own (writable: Sentinel rewrites it) config file.
pub async fn sentinel(dir: &std::path::Path, primary: u16) -> Instance {
    let dir = dir.to_owned();
    Instance::start("redis-sentinel", move |port| {
        let file = dir.join(format!("sentinel-{port}.conf"));
        let config = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
             sentinel down-after-milliseconds {MASTER} 1000\n\
             sentinel failover-timeout {MASTER} 10000\n",
            dir = dir.display()
        );
        std::fs::write(&file, config).expect("write sentinel config");
        vec![file.display().to_string()]
    })
    .await
}
