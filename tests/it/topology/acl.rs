//! The ACL user from the README: exactly its rule is enough for every path of the scripts,
//! and with one permission less a node says NOPERM instead of counting.

use std::collections::HashMap;
use std::time::Duration;

use rust_socketio::TransportType;
use serde_json::json;

use super::logged::LoggedNode;
use crate::helpers::{
    CONVERGE, RedisServer, TestClient, all_show, connect, connect_many, eventually, node_env, presence,
    spawn_node, try_connect_with, unique_prefix,
};
use crate::webhooks::receiver::{Mode, Receiver, SECRET};

/// The commands of README's rule, "An ACL user for rollcall". Redis checks the commands a
/// script calls against the user too, so the scripts' commands are here; keep this list and the
/// README in step with `node/src/presence/redis/lua/`.
const COMMANDS: &[&str] = &[
    "evalsha",
    "script|load",
    "ping",
    "subscribe",
    "publish",
    "time",
    "get",
    "set",
    "del",
    "incr",
    "hget",
    "hmget",
    "hset",
    "hdel",
    "hvals",
    "hgetall",
    "hlen",
    "sadd",
    "srem",
    "smembers",
    "zadd",
    "zrange",
    "zrangebyscore",
    "zrangebylex",
    "zrem",
    "zscore",
    // Webhooks: the scripts' events (`exists` for due vacancies, `xadd`), the delivery lease
    // (`set`, `get`, `pexpire` in lease.lua), the stream's consumer group, dead letters.
    "exists",
    "xadd",
    "xgroup|create",
    "xreadgroup",
    "xautoclaim",
    "xack",
    "xdel",
    "xlen",
    "lpush",
    "ltrim",
    "lrange",
    "pexpire",
];

pub(super) const PASSWORD: &str = "s3cret-for-tests";

/// With Sentinel, a node also asks the primary for its ROLE (to find it, and before it reuses a
/// connection: an old primary that came back as a replica must not be written to).
pub(super) const SENTINEL_COMMANDS: &[&str] = &["role"];

/// On a Redis Cluster, a node also learns which primary serves which slots, and announces on
/// sharded channels.
pub(super) const CLUSTER_COMMANDS: &[&str] = &["cluster|slots", "spublish", "ssubscribe"];

/// README's rule for `prefix`: its keys and channels (`{prefix}:...` and, for rooms,
/// `{prefix:...}...`), the commands above, nothing else.
pub(super) fn rule(prefix: &str) -> Vec<String> {
    let mut rule: Vec<String> =
        vec!["on".into(), format!(">{PASSWORD}"), "resetkeys".into(), "resetchannels".into()];
    rule.extend([format!("~{{{prefix}}}:*"), format!("~{{{prefix}:*")]);
    rule.extend([format!("&{{{prefix}}}:*"), format!("&{{{prefix}:*")]);
    rule.push("-@all".into());
    rule.extend(COMMANDS.iter().map(|command| format!("+{command}")));
    rule
}

/// `ACL SETUSER user rule...`, for any server (plain, Sentinel-managed or in a cluster).
pub(super) fn set_user_command<'a>(user: &'a str, rule: &'a [String]) -> Vec<&'a str> {
    let mut args = vec!["ACL", "SETUSER", user];
    args.extend(rule.iter().map(String::as_str));
    args
}

async fn set_user(redis: &RedisServer, user: &str, rule: &[String]) {
    redis.cmd::<()>(&set_user_command(user, rule)).await;
}

pub(super) fn as_user(mut env: HashMap<String, String>, user: &str) -> HashMap<String, String> {
    env.insert("ROLLCALL_REDIS_USERNAME".into(), user.into());
    env.insert("ROLLCALL_REDIS_PASSWORD".into(), PASSWORD.into());
    env
}

/// What `ACL LOG` says was refused, less what is harmless: the client library names itself after
/// connecting (CLIENT SETINFO) and ignores a refusal.
pub(super) fn refused(log: Vec<HashMap<String, redis::Value>>) -> Vec<String> {
    log.iter()
        .filter_map(|entry| redis::from_redis_value::<String>(entry.get("object")?.clone()).ok())
        .filter(|object| object != "client|setinfo")
        .collect()
}

/// One more client on `base`, then every client shows `expected`.
async fn one_more(clients: &mut Vec<TestClient>, base: &str, expected: i64) {
    clients.push(connect(base, TransportType::Websocket).await);
    all_show(clients, expected).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_acl_user_is_enough_for_every_path() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("acl");
    set_user(&redis, "rollcall", &rule(&prefix)).await;
    let fast = [("ROLLCALL_HEARTBEAT_INTERVAL_MS", "300"), ("ROLLCALL_NODE_TTL_MS", "1000")];
    let env = |id: &str| {
        let mut env = as_user(node_env(Some(&redis.url()), &prefix, id), "rollcall");
        env.extend(fast.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        env
    };
    let spawn = async |id: &str| {
        let env = env(id);
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        spawn_node(None, &prefix, id, &pairs).await
    };
    let (a, c) = (spawn("a").await, spawn("c").await);
    let b = LoggedNode::start(&env("b")).await;
    let mut on_a = connect_many(&[a.url()], 5, TransportType::Websocket).await;
    let on_b = connect_many(&[b.url()], 5, TransportType::Websocket).await;
    let on_c = connect_many(&[c.url()], 5, TransportType::Websocket).await;
    all_show(&on_a, 15).await;

    let key = |name: &str| format!("{{{prefix}}}:{name}");
    redis.cmd::<()>(&["SCRIPT", "FLUSH"]).await; // next write: NOSCRIPT, SCRIPT LOAD, EVALSHA
    one_more(&mut on_a, &a.url(), 16).await;
    redis.cmd::<()>(&["DEL", &key("agg")]).await; // the count is lost: every node writes its share back
    one_more(&mut on_a, &a.url(), 17).await;
    // Rooms: group steps (sets, listing), the rooms API reads, a member page.
    let in_rooms =
        try_connect_with(&a.url(), TransportType::Websocket, Some(json!({ "rooms": ["r1", "r2"] })))
            .await
            .expect("connects");
    on_a.push(in_rooms);
    all_show(&on_a, 18).await;
    for path in ["/api/rooms/r1", "/api/rooms?prefix=r", "/api/rooms/r2/members"] {
        let status = reqwest::get(format!("{}{path}", a.url())).await.expect("GET").status();
        assert!(status.is_success() || status == 404, "{path}: {status}");
    }
    let body = json!({ "rooms": ["r1", "r2", "r3"] });
    let counts =
        reqwest::Client::new().post(format!("{}/api/rooms/counts", a.url())).json(&body).send().await;
    assert!(counts.expect("POST").status().is_success());
    drop(b); // SIGKILL: a survivor reaps it (HDEL, ZREM)
    all_show(&on_a, 13).await;
    let (seconds, _): (i64, i64) = redis.cmd(&["TIME"]).await;
    let long_ago = ((seconds - 60) * 1000).to_string();
    redis.cmd::<()>(&["SET", &key("clock"), &long_ago]).await; // Redis "was away": ZRANGE, ZADD
    one_more(&mut on_a, &a.url(), 14).await;
    c.shutdown().await; // deregister
    all_show(&on_a, 9).await;
    drop(on_b);
    drop(on_c);

    assert_eq!(presence(&a.url()).await["degraded"], false);
    let objects = refused(redis.cmd(&["ACL", "LOG"]).await);
    assert!(objects.is_empty(), "the rule refused {objects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_acl_user_is_enough_for_webhooks() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("acl-hooks");
    set_user(&redis, "rollcall", &rule(&prefix)).await;
    let receiver = Receiver::start().await;
    receiver.set_mode(Mode::Fail);
    let mut env = as_user(node_env(Some(&redis.url()), &prefix, "n"), "rollcall");
    let hooks = [
        ("ROLLCALL_WEBHOOK_URL", receiver.url()),
        ("ROLLCALL_WEBHOOK_SECRET", SECRET.to_owned()),
        ("ROLLCALL_WEBHOOK_VACATED_DELAY_MS", "300".to_owned()),
        ("ROLLCALL_WEBHOOK_MAX_ATTEMPTS", "2".to_owned()),
    ];
    env.extend(hooks.into_iter().map(|(k, v)| (k.to_owned(), v)));
    let node = LoggedNode::start(&env).await;
    // Failing deliveries end as dead letters (LPUSH, LTRIM), listed by the API (LRANGE).
    let first = try_connect_with(&node.url(), TransportType::Websocket, Some(json!({ "rooms": ["lost"] })))
        .await
        .expect("connects");
    let dead_url = format!("{}/api/webhooks/dead", node.url());
    eventually("a dead letter", CONVERGE, || async {
        let page: serde_json::Value = reqwest::get(&dead_url).await.expect("GET").json().await.expect("json");
        page["events"].as_array().is_some_and(|dead| !dead.is_empty())
    })
    .await;
    // Then delivered: read by the consumer group, acknowledged and deleted; a vacancy comes due.
    receiver.set_mode(Mode::Ok);
    let second = try_connect_with(&node.url(), TransportType::Websocket, Some(json!({ "rooms": ["kept"] })))
        .await
        .expect("connects");
    eventually("kept is counted", CONVERGE, || async { second.room_last("kept") == Some((1, 1)) }).await;
    second.disconnect().await;
    eventually("kept occupied and vacated, delivered", CONVERGE, || async {
        receiver.count("room.occupied", "kept", None) >= 1
            && receiver.count("room.vacated", "kept", None) >= 1
    })
    .await;
    drop(first);
    assert!(!node.log().contains("NoPerm") && !node.log().contains("can't run"), "{}", node.log());
    let objects = refused(redis.cmd(&["ACL", "LOG"]).await);
    assert!(objects.is_empty(), "the rule refused {objects:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_permission_less_is_a_clear_noperm() {
    let prefix = unique_prefix("acl-less");
    let full = rule(&prefix);
    let without = |dropped: &[String]| -> Vec<String> {
        full.iter().filter(|part| !dropped.contains(part)).cloned().collect()
    };
    let keys = vec![format!("~{{{prefix}}}:*")];
    let channels = vec![format!("&{{{prefix}}}:*")];
    // (what is missing, the rule without it, what the log says, whether the node stays degraded).
    // Redis 7.0 words a refusal inside a script as an ERR. Without PUBLISH, only writes that
    // change the count fail (the script stops at its PUBLISH), so the node flips in and out of
    // degraded (the same without the channel pattern, where SUBSCRIBE fails too); without
    // SUBSCRIBE the writes work and only the subscription fails.
    let in_script = "can't run this command";
    let cases = [
        ("+evalsha", without(&["+evalsha".into()]), "NoPerm", true),
        ("+script|load", without(&["+script|load".into()]), "NoPerm", true),
        ("+publish", without(&["+publish".into()]), in_script, false),
        ("the key pattern", without(&keys), "NoPerm", true),
        ("the channel pattern", without(&channels), "NoPerm", false),
        ("+subscribe", without(&["+subscribe".into()]), "NoPerm", false),
    ];
    let runs = cases.iter().map(|(what, rule, reason, degraded)| {
        let prefix = prefix.clone();
        async move {
            let redis = RedisServer::start().await; // its own: no scripts loaded by another case
            set_user(&redis, "rollcall", rule).await;
            let env = as_user(node_env(Some(&redis.url()), &prefix, "n"), "rollcall");
            let node = LoggedNode::start(&env).await;
            let line = if *degraded {
                node.degraded_with(reason).await
            } else {
                eventually(reason, CONVERGE, || async { !node.lines_with(reason).is_empty() }).await;
                node.lines_with(reason).remove(0)
            };
            eprintln!("without {what}: {line}");
            assert!(line.contains(reason), "without {what}: {line}");
            if *degraded {
                assert_eq!(
                    presence(&node.url()).await["users"],
                    serde_json::Value::Null,
                    "without {what}: no number"
                );
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(
                node.lines_with(reason).len() <= 2,
                "logged once per path, not per retry: {}",
                node.log()
            );
        }
    });
    futures_util::future::join_all(runs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_one_degraded_line() {
    let redis = RedisServer::start().await;
    let prefix = unique_prefix("acl-password");
    set_user(&redis, "rollcall", &rule(&prefix)).await;
    let mut env = as_user(node_env(Some(&redis.url()), &prefix, "n"), "rollcall");
    env.insert("ROLLCALL_REDIS_PASSWORD".into(), "not-the-password".into());
    let node = LoggedNode::start(&env).await;
    let line = node.degraded_with("cannot write to the backend").await;
    eprintln!("{line}");
    assert!(line.contains("Password authentication failed"), "{line}");
    assert!(!node.log().contains("not-the-password"), "the password is never logged: {}", node.log());
}
