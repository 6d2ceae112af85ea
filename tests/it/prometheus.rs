//! The shipped rules in a real Prometheus (Debian's `/usr/bin/prometheus`) scraping three process
//! nodes on one real redis-server: the recording rules give the true cluster totals, every rule
//! evaluates without error, nothing fires on a healthy cluster, and a node killed with SIGKILL
//! fires `RollcallDeadNodesReaped` (and `RollcallNodeDown`) in `/api/v1/alerts`. Every query of
//! the Grafana dashboard evaluates too, and those over metrics a node exports today return data.
//!
//! The rules are `deploy/prometheus/rollcall.rules.yml` with ONE substitution: every `for:`
//! duration becomes `1s` (see [`with_short_for`]), so alerts that wait minutes in production fire
//! within the test's deadlines. Expressions, ranges and thresholds are the shipped ones.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rust_socketio::TransportType;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::{
    ProcessNode, RedisServer, all_show, connect_many, eventually, node_env, on_free_port, unique_prefix,
};

const RULES: &str = include_str!("../../deploy/prometheus/rollcall.rules.yml");
const DASHBOARD: &str = include_str!("../../deploy/grafana/rollcall.json");
const PROMETHEUS: &str = "/usr/bin/prometheus";
/// Scrapes and rule evaluations are 1 s apart; a few of them fit in this.
const SEEN: Duration = Duration::from_secs(30);

/// The shipped rules with every `for:` duration replaced by `1s`.
fn with_short_for(rules: &str) -> String {
    let mut replaced = 0;
    let lines: Vec<String> = rules
        .lines()
        .map(|line| {
            let body = line.trim_start();
            if body.starts_with("for: ") {
                replaced += 1;
                format!("{}for: 1s", &line[..line.len() - body.len()])
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(replaced >= 10, "expected the alerts' `for:` lines, found {replaced}");
    lines.join("\n") + "\n"
}

/// Every panel query of the dashboard, with Grafana's variables replaced by this test's values.
fn dashboard_queries() -> Vec<String> {
    fn walk(panels: &Value, out: &mut Vec<String>) {
        for panel in panels.as_array().into_iter().flatten() {
            let targets = panel["targets"].as_array().into_iter().flatten();
            out.extend(targets.filter_map(|t| t["expr"].as_str()).map(str::to_owned));
            walk(&panel["panels"], out);
        }
    }
    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("dashboard json");
    let mut queries = Vec::new();
    walk(&dashboard["panels"], &mut queries);
    assert!(queries.len() > 20, "found only {} dashboard queries", queries.len());
    let variables = [("$__rate_interval", "1m"), ("$instance", ".*"), ("$job", "rollcall")];
    queries
        .iter()
        .map(|q| variables.iter().fold(q.clone(), |q, (var, value)| q.replace(var, value)))
        .collect()
}

/// The `rollcall_*` metric names in a query.
fn metric_names(query: &str) -> Vec<&str> {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    query
        .match_indices("rollcall_")
        .filter(|(at, _)| !query[..*at].ends_with(is_name))
        .map(|(at, _)| {
            let rest = &query[at..];
            &rest[..rest.find(|c| !is_name(c)).unwrap_or(rest.len())]
        })
        .collect()
}

/// Metric names in a node's `/metrics` exposition.
async fn exported_metrics(node: &str) -> Vec<String> {
    let text = reqwest::get(format!("{node}/metrics")).await.expect("metrics").text().await.expect("text");
    let names = text.lines().filter(|line| !line.starts_with('#'));
    names.filter_map(|line| line.split(['{', ' ']).next()).map(str::to_owned).collect()
}

/// A Prometheus child process on a free loopback port with its own config, rules and storage in a
/// temporary directory; killed (by its PID) and the directory removed on drop.
struct Prometheus {
    child: Child,
    port: u16,
    dir: PathBuf,
    http: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (ports on 127.0.0.1) every second as job `rollcall`.
    async fn start(targets: &[u16]) -> Self {
        let dir = std::env::temp_dir().join(unique_prefix("prometheus"));
        std::fs::create_dir_all(&dir).expect("create prometheus dir");
        std::fs::write(dir.join("rollcall.rules.yml"), with_short_for(RULES)).expect("write rules");
        let targets: Vec<String> = targets.iter().map(|port| format!("'127.0.0.1:{port}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\n\
             rule_files:\n  - rollcall.rules.yml\n\
             scrape_configs:\n  - job_name: rollcall\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("write prometheus.yml");
        on_free_port("prometheus", |port| Self::try_start_on(port, dir.clone())).await
    }

    async fn try_start_on(port: u16, dir: PathBuf) -> Option<Self> {
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", dir.join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("Debian's prometheus package must be installed (scripts/test.sh installs it)");
        let mut prometheus = Self { child, port, dir, http: reqwest::Client::new() };
        let started = Instant::now();
        loop {
            let ready = prometheus.http.get(prometheus.url("/-/ready")).send().await;
            if ready.is_ok_and(|r| r.status().is_success()) {
                return Some(prometheus);
            }
            if prometheus.child.try_wait().ok().flatten().is_some() {
                // Exited (port taken?): keep the directory for the next attempt.
                prometheus.dir = PathBuf::new();
                return None;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "prometheus not ready after 30s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// GET `path` with `query` and returns `data` of the API's JSON envelope.
    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = self.http.get(self.url(path)).query(query).send().await.expect("prometheus api");
        let body: Value = response.json().await.expect("prometheus api json");
        assert_eq!(body["status"], "success", "{path} {query:?}: {body}");
        body["data"].clone()
    }

    /// Instant query: each series' labels and value.
    async fn query(&self, promql: &str) -> Vec<(HashMap<String, String>, f64)> {
        let data = self.api("/api/v1/query", &[("query", promql)]).await;
        let result = data["result"].as_array().cloned().unwrap_or_default();
        result
            .iter()
            .map(|series| {
                let labels = serde_json::from_value(series["metric"].clone()).expect("labels");
                let value = series["value"][1].as_str().and_then(|v| v.parse().ok()).expect("value");
                (labels, value)
            })
            .collect()
    }

    /// The values of `promql`, sorted.
    async fn values(&self, promql: &str) -> Vec<f64> {
        let mut values: Vec<f64> = self.query(promql).await.into_iter().map(|(_, v)| v).collect();
        values.sort_by(f64::total_cmp);
        values
    }

    /// Alerts in state `firing`, as their label sets.
    async fn firing(&self) -> Vec<HashMap<String, String>> {
        let data = self.api("/api/v1/alerts", &[]).await;
        let alerts = data["alerts"].as_array().cloned().unwrap_or_default();
        alerts
            .iter()
            .filter(|alert| alert["state"] == "firing")
            .map(|alert| serde_json::from_value(alert["labels"].clone()).expect("alert labels"))
            .collect()
    }

    /// Whether an alert named `name` fires with every label in `labels`.
    async fn fires(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.firing().await.iter().any(|alert| {
            alert.get("alertname").map(String::as_str) == Some(name)
                && labels.iter().all(|(k, v)| alert.get(*k).map(String::as_str) == Some(*v))
        })
    }

    /// Every loaded rule as (name, health, last error).
    async fn rule_health(&self) -> Vec<(String, String, String)> {
        let data = self.api("/api/v1/rules", &[]).await;
        let groups = data["groups"].as_array().cloned().unwrap_or_default();
        let field = |rule: &Value, key: &str| rule[key].as_str().unwrap_or_default().to_owned();
        groups
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .map(|rule| (field(&rule, "name"), field(&rule, "health"), field(&rule, "lastError")))
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Whether the recording rules and the nodes' own gauges, as Prometheus has them, say `users`
/// users on `nodes` nodes that agree.
async fn rules_show(prometheus: &Prometheus, users: f64, nodes: usize) -> bool {
    prometheus.values("rollcall:local_connections:sum").await == [users]
        && prometheus.values("rollcall_cluster_users").await == vec![users; nodes]
        && prometheus.values("rollcall:cluster_users:max").await == [users]
        && prometheus.values("rollcall:cluster_users:disagreement").await == [0.0]
        && prometheus.values("rollcall:nodes_alive:max").await == [nodes as f64]
        && prometheus.values("rollcall:nodes_not_degraded:count").await == [nodes as f64]
}

/// Every dashboard query evaluates (the API fails the request otherwise), and those over metrics
/// the node at `node` exports today (or `up`) have data.
async fn dashboard_queries_evaluate(prometheus: &Prometheus, node: &str) {
    let exported = exported_metrics(node).await;
    let mut with_data = 0;
    for query in dashboard_queries() {
        let today = metric_names(&query).iter().all(|name| exported.iter().any(|e| e == name));
        with_data += usize::from(today);
        eventually(&format!("dashboard query evaluates, with data if it can: {query}"), SEEN, || async {
            let has_data = !prometheus.query(&query).await.is_empty();
            has_data || !today
        })
        .await;
    }
    assert!(with_data >= 15, "only {with_data} dashboard queries use metrics the nodes export today");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_with_the_shipped_rules_sees_the_true_totals_and_alerts_on_a_killed_node() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("prometheus");
    let mut nodes = Vec::new();
    for id in ["a", "b", "c"] {
        nodes.push(ProcessNode::start(node_env(Some(&redis.url()), &prefix, id)).await);
    }
    let prometheus = Prometheus::start(&nodes.iter().map(|n| n.port).collect::<Vec<_>>()).await;
    let urls: Vec<String> = nodes.iter().map(ProcessNode::url).collect();
    let clients = connect_many(&urls, 30, TransportType::Websocket).await;
    all_show(&clients, 30).await;
    eventually("the rules show 30 users on 3 nodes", SEEN, || rules_show(&prometheus, 30.0, 3)).await;
    eventually("every rule evaluated without error", SEEN, || async {
        prometheus.rule_health().await.iter().all(|(_, health, _)| health == "ok")
    })
    .await;
    dashboard_queries_evaluate(&prometheus, &urls[0]).await;
    eventually("no alert fires on the healthy cluster", SEEN, || async {
        prometheus.firing().await.is_empty()
    })
    .await;

    // connect_many spreads round robin: clients 2, 5, 8... are on the third node.
    let killed = nodes.pop().expect("three nodes");
    let killed_instance = format!("127.0.0.1:{}", killed.port);
    killed.signal("KILL").await;
    let survivors: Vec<_> = clients.iter().skip(1).step_by(3).chain(clients.iter().step_by(3)).collect();
    eventually("the survivors' clients show 20", SEEN, || async {
        survivors.iter().all(|c| c.last() == Some(20))
    })
    .await;
    eventually("RollcallDeadNodesReaped fires", SEEN, || async {
        prometheus.fires("RollcallDeadNodesReaped", &[("job", "rollcall"), ("severity", "warning")]).await
    })
    .await;
    eventually("RollcallNodeDown fires for the killed node", SEEN, || async {
        prometheus.fires("RollcallNodeDown", &[("instance", &killed_instance)]).await
    })
    .await;
    eventually("the rules show 20 users on 2 nodes", SEEN, || rules_show(&prometheus, 20.0, 2)).await;
    let failing: Vec<_> = prometheus.rule_health().await.into_iter().filter(|(_, h, _)| h != "ok").collect();
    assert!(failing.is_empty(), "rules that failed to evaluate: {failing:?}");
    let reaped = prometheus.query("sum(rollcall_dead_nodes_reaped_total)").await;
    assert_eq!(reaped.first().map(|(_, v)| *v), Some(1.0), "one reap, by one survivor");
}
