//! How a node reaches a Redis Cluster: one cluster connection for every script (it routes each
//! call by its key's slot and follows MOVED/ASK and failovers), and a fresh cluster connection
//! per subscription for sharded pub/sub (SSUBSCRIBE per channel, each on its slot's primary).
//!
//! The subscription is made new, from the seed nodes, whenever anything about it is in doubt —
//! a connection to a shard dropped, or a server dropped a channel because its slot moved — so
//! the subscriber can report each re-subscription and the coordinator re-reads every count.

use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, PushKind, RedisResult, TlsCertificates};
use tokio::sync::mpsc;

use crate::config::ClusterTarget;

/// A Redis Cluster, as the settings name it.
pub(super) struct ClusterRoute {
    /// The seed nodes from the settings.
    nodes: Vec<ConnectionInfo>,
    /// Every node the cluster named in its last `CLUSTER SLOTS` reply: new connections start
    /// from these and the seeds, so a node keeps its way after its seeds have failed.
    known: std::sync::Mutex<Vec<(String, u16)>>,
    target: ClusterTarget,
    tls: Option<TlsCertificates>,
    timeout: Duration,
    /// The scripts' connection (it reconnects by itself); replaced after a failure that may
    /// mean it lost its way (see [`ClusterRoute::forget`]).
    scripts: tokio::sync::Mutex<Option<ClusterConnection>>,
    /// For messages: "the Redis Cluster nodes host:port,...".
    pub described: String,
}

impl ClusterRoute {
    /// Prepares the route; connects to nothing yet.
    pub fn new(target: &ClusterTarget, tls: Option<TlsCertificates>, timeout: Duration) -> RedisResult<Self> {
        let nodes =
            target.nodes.iter().map(|node| address(node, tls.is_some())).collect::<RedisResult<Vec<_>>>()?;
        let listed = target.nodes.iter().map(|(h, p)| format!("{h}:{p}")).collect::<Vec<_>>().join(",");
        Ok(Self {
            nodes,
            known: std::sync::Mutex::new(Vec::new()),
            target: target.clone(),
            tls,
            timeout,
            scripts: tokio::sync::Mutex::new(None),
            described: format!("the Redis Cluster nodes {listed}"),
        })
    }

    /// A client for the cluster: credentials, TLS, deadlines; retries stay within one operation's
    /// deadline (the caller's backoff does the rest).
    fn builder(&self) -> ClusterClientBuilder {
        let known = self.known.lock().map(|known| known.clone()).unwrap_or_default();
        let mut nodes = self.nodes.clone();
        nodes.extend(known.iter().filter_map(|node| address(node, self.tls.is_some()).ok()));
        let mut builder = ClusterClientBuilder::new(nodes)
            .connection_timeout(self.timeout * 3 / 4)
            .response_timeout(self.timeout)
            .retries(3)
            .min_retry_wait(10)
            .max_retry_wait(200);
        if let Some(certificates) = &self.tls {
            builder = builder.tls(redis::TlsMode::Secure).certs(certificates.clone());
        }
        if let Some(username) = &self.target.auth.username {
            builder = builder.username(username);
        }
        if let Some(password) = &self.target.auth.password {
            builder = builder.password(password);
        }
        builder
    }

    /// The scripts' connection: the one in use, or a new one.
    pub async fn connection(&self) -> RedisResult<ClusterConnection> {
        let mut cached = self.scripts.lock().await;
        if let Some(conn) = cached.as_ref() {
            return Ok(conn.clone());
        }
        let client = self.builder().build()?;
        let conn = self.connect(&client).await?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    /// After a failed call whose cause was the way to the cluster (not a script's error): the
    /// next call starts over from the seed nodes.
    pub fn forget(&self) {
        if let Ok(mut cached) = self.scripts.try_lock() {
            *cached = None;
        }
    }

    /// A new cluster connection, with the reason in words when the seeds are not a cluster;
    /// it also refreshes the nodes known for the next one.
    async fn connect(&self, client: &ClusterClient) -> RedisResult<ClusterConnection> {
        let connected = client.get_async_connection().await;
        if let Ok(conn) = &connected {
            let mut conn = conn.clone();
            let slots: RedisResult<redis::Value> =
                redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await;
            let listed = slots.map(|slots| nodes_of(&slots)).unwrap_or_default();
            if let (false, Ok(mut known)) = (listed.is_empty(), self.known.lock()) {
                *known = listed;
            }
        }
        connected.map_err(|e| {
            let text = e.to_string();
            let reason = if text.contains("cluster support disabled") {
                format!("{} are not a Redis Cluster (cluster support disabled): {text}", self.described)
            } else {
                format!("cannot reach {}: {text}", self.described)
            };
            std::io::Error::other(reason).into()
        })
    }

    /// SSUBSCRIBEs every channel on its slot's primary, over a new connection.
    pub async fn subscribe(&self, channels: &[String]) -> RedisResult<ShardedSubscription> {
        let (sender, pushes) = mpsc::unbounded_channel();
        let client =
            self.builder().use_protocol(redis::ProtocolVersion::RESP3).push_sender(sender).build()?;
        let conn = self.connect(&client).await?;
        // One command per channel: each has its own hash tag, so its own slot (maybe its own shard).
        let subscribed = futures_util::future::try_join_all(channels.iter().map(|channel| {
            let mut conn = conn.clone();
            async move { conn.ssubscribe(channel).await }
        }))
        .await;
        subscribed?;
        Ok(ShardedSubscription { _conn: conn, pushes })
    }
}

/// Sharded channels subscribed over one cluster connection.
pub(super) struct ShardedSubscription {
    /// Keeps the connection (and its pushes) alive.
    _conn: ClusterConnection,
    pushes: mpsc::UnboundedReceiver<redis::PushInfo>,
}

impl ShardedSubscription {
    /// The next message; `None` once the subscription can no longer be trusted: a connection
    /// to a shard dropped (messages may be lost while the client re-subscribes by itself), or
    /// a server dropped channels of a slot it no longer serves.
    pub async fn next(&mut self) -> Option<redis::Msg> {
        loop {
            let push = self.pushes.recv().await?;
            match push.kind {
                PushKind::SMessage | PushKind::Message => return redis::Msg::from_push_info(push),
                PushKind::Disconnection | PushKind::SUnsubscribe => return None,
                _ => {}
            }
        }
    }
}

/// The address of a node, with TLS or without.
fn address((host, port): &(String, u16), tls: bool) -> RedisResult<ConnectionInfo> {
    let addr = if tls {
        ConnectionAddr::TcpTls { host: host.clone(), port: *port, insecure: false, tls_params: None }
    } else {
        ConnectionAddr::Tcp(host.clone(), *port)
    };
    addr.into_connection_info()
}

/// Every node (primaries and replicas) in a `CLUSTER SLOTS` reply:
/// `[[start, end, [host, port, id...], [replica host, port, id...]...]...]`.
fn nodes_of(slots: &redis::Value) -> Vec<(String, u16)> {
    let redis::Value::Array(ranges) = slots else { return Vec::new() };
    let mut nodes: Vec<(String, u16)> = ranges
        .iter()
        .filter_map(|range| match range {
            redis::Value::Array(fields) => Some(fields.iter().skip(2)),
            _ => None,
        })
        .flatten()
        .filter_map(|node| match node {
            redis::Value::Array(fields) if fields.len() >= 2 => {
                let host = redis::from_redis_value_ref::<String>(&fields[0]).ok()?;
                let port = redis::from_redis_value_ref::<u16>(&fields[1]).ok()?;
                Some((host, port))
            }
            _ => None,
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}

#[cfg(test)]
mod tests {
    use redis::Value;

    use super::nodes_of;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.into()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn every_primary_and_replica_of_cluster_slots_once() {
        let slots = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(9000),
                node("10.0.0.2", 7001),
                node("10.0.0.5", 7004),
            ]),
            Value::Array(vec![Value::Int(9001), Value::Int(10922), node("10.0.0.2", 7001)]),
        ]);
        let expected = [("10.0.0.1", 7000), ("10.0.0.2", 7001), ("10.0.0.4", 7003), ("10.0.0.5", 7004)];
        let expected: Vec<(String, u16)> = expected.iter().map(|(h, p)| ((*h).to_owned(), *p)).collect();
        assert_eq!(nodes_of(&slots), expected);
        assert!(nodes_of(&Value::Nil).is_empty(), "an unexpected reply names nobody");
    }
}
