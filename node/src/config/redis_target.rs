//! The Redis settings as one checked value: where Redis is (one server, the primary that
//! Sentinel names, or a Redis Cluster), who the node is there (ACL user and password) and how the link is secured
//! (TLS, mutual TLS). Every problem is a [`ConfigError`] naming its key, found before the node
//! starts; only what shows when connecting (an untrusted server, a wrong password) is left to
//! the degraded state.

use std::path::Path;
use std::sync::Arc;

use redis::{ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, TlsCertificates};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::validate::invalid;
use super::{ConfigError, Settings};

/// Where the cluster's Redis is and how a node reaches it.
#[derive(Debug, Clone)]
pub struct RedisTarget {
    /// One server, a primary that Sentinel names, or a cluster.
    pub topology: Topology,
    /// `Some`: every connection (to Redis and to the sentinels) uses TLS. Empty fields mean the
    /// system's root certificates and no client certificate.
    pub tls: Option<TlsCertificates>,
}

/// The shape of the Redis deployment.
#[derive(Debug, Clone)]
pub enum Topology {
    /// `redis_url`: one server; the user and password are already in the connection info.
    Server(ConnectionInfo),
    /// `redis_sentinels`: ask them for the current primary of `master`.
    Sentinel(SentinelTarget),
    /// `redis_cluster_nodes`: a Redis Cluster, found through some of its nodes.
    Cluster(ClusterTarget),
}

/// A Redis Cluster.
#[derive(Debug, Clone)]
pub struct ClusterTarget {
    /// `host:port` of the nodes to learn the cluster's layout from.
    pub nodes: Vec<(String, u16)>,
    /// How to log in to every node.
    pub auth: Credentials,
}

/// A primary found through Sentinel.
#[derive(Debug, Clone)]
pub struct SentinelTarget {
    /// `host:port` of each sentinel.
    pub sentinels: Vec<(String, u16)>,
    /// The name the sentinels monitor the primary under.
    pub master: String,
    /// How to log in to the primary (database 0).
    pub auth: Credentials,
    /// How to log in to the sentinels themselves.
    pub sentinel_auth: Credentials,
}

/// An ACL user (or the default user) and its password.
#[derive(Clone, Default)]
pub struct Credentials {
    /// `None`: the default user.
    pub username: Option<String>,
    /// `None`: no AUTH.
    pub password: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let password = self.password.as_ref().map(|_| "<redacted>");
        f.debug_struct("Credentials").field("username", &self.username).field("password", &password).finish()
    }
}

/// The Redis target the settings describe; `None` in standalone mode.
pub(super) fn target(s: &Settings) -> Result<Option<RedisTarget>, ConfigError> {
    let sentinels = entries(&s.redis_sentinels);
    let cluster = entries(&s.redis_cluster_nodes);
    let chosen = [s.redis_url().is_some(), !sentinels.is_empty(), !cluster.is_empty()];
    if chosen.iter().filter(|set| **set).count() > 1 {
        let key = if cluster.is_empty() { "redis_sentinels" } else { "redis_cluster_nodes" };
        return Err(invalid(
            key,
            "set one of redis_url (one server), redis_sentinels (Sentinel) or redis_cluster_nodes (Redis Cluster)",
        ));
    }
    if sentinels.is_empty() && !s.redis_sentinel_master.trim().is_empty() {
        return Err(invalid("redis_sentinel_master", "is set but redis_sentinels is empty"));
    }
    let topology = if let Some(url) = s.redis_url() {
        Topology::Server(server(s, url)?)
    } else if !sentinels.is_empty() {
        Topology::Sentinel(sentinel(s, &sentinels)?)
    } else if !cluster.is_empty() {
        Topology::Cluster(cluster_target(s, &cluster)?)
    } else {
        return Ok(None);
    };
    let tls_on = match &topology {
        Topology::Server(info) => matches!(info.addr(), ConnectionAddr::TcpTls { .. }),
        Topology::Sentinel(_) | Topology::Cluster(_) => s.redis_tls,
    };
    Ok(Some(RedisTarget { topology, tls: tls_certificates(s, tls_on)? }))
}

/// The non-empty entries of a list setting.
fn entries(list: &[String]) -> Vec<&str> {
    list.iter().map(|e| e.trim()).filter(|e| !e.is_empty()).collect()
}

fn server(s: &Settings, url: &str) -> Result<ConnectionInfo, ConfigError> {
    let shown = if url.contains('@') {
        "the URL (not shown: it has credentials)".to_owned()
    } else {
        format!("{url:?}")
    };
    let info = url
        .into_connection_info()
        .map_err(|e| invalid("redis_url", format!("{shown} is not a redis:// or rediss:// URL: {e}")))?;
    match info.addr() {
        ConnectionAddr::TcpTls { insecure: true, .. } => {
            return Err(invalid(
                "redis_url",
                "#insecure would turn certificate checks off; trust the server's CA with redis_tls_ca_file instead",
            ));
        }
        ConnectionAddr::Tcp(..) if s.redis_tls => {
            return Err(invalid("redis_tls", "with redis_url, ask for TLS with the rediss:// scheme"));
        }
        _ => {}
    }
    let mut redis = info.redis_settings().clone();
    let username = one_place("redis_username", redis.username(), &s.redis_username)?;
    let password = one_place("redis_password", redis.password(), s.redis_password.expose())?;
    check_pair("redis_username", &username, &password)?;
    if let Some(username) = username {
        redis = redis.set_username(username);
    }
    if let Some(password) = password {
        redis = redis.set_password(password);
    }
    Ok(info.set_redis_settings(redis))
}

/// A credential given in the URL or in its own setting, never both (which one would win?).
fn one_place(key: &'static str, in_url: Option<&str>, setting: &str) -> Result<Option<String>, ConfigError> {
    match (in_url, setting.is_empty()) {
        (Some(_), false) => Err(invalid(key, "is also in redis_url; give it in one place")),
        (Some(value), true) => Ok(Some(value.to_owned())),
        (None, false) => Ok(Some(setting.to_owned())),
        (None, true) => Ok(None),
    }
}

/// An ACL user logs in with `AUTH user password`: a user without a password cannot log in.
fn check_pair(
    key: &'static str,
    username: &Option<String>,
    password: &Option<String>,
) -> Result<(), ConfigError> {
    if username.is_some() && password.is_none() {
        return Err(invalid(key, "is set without a password"));
    }
    Ok(())
}

fn sentinel(s: &Settings, entries: &[&str]) -> Result<SentinelTarget, ConfigError> {
    let sentinels =
        entries.iter().map(|entry| host_port("redis_sentinels", entry)).collect::<Result<Vec<_>, _>>()?;
    let master = s.redis_sentinel_master.trim();
    if master.is_empty() {
        return Err(invalid(
            "redis_sentinel_master",
            "name the primary the sentinels monitor (the <name> of `sentinel monitor <name> ...`)",
        ));
    }
    let credentials = |user: &str, password: &str, key| {
        let auth = Credentials {
            username: Some(user.to_owned()).filter(|u| !u.is_empty()),
            password: Some(password.to_owned()).filter(|p| !p.is_empty()),
        };
        check_pair(key, &auth.username, &auth.password).map(|()| auth)
    };
    Ok(SentinelTarget {
        sentinels,
        master: master.to_owned(),
        auth: credentials(&s.redis_username, s.redis_password.expose(), "redis_username")?,
        sentinel_auth: credentials(
            &s.redis_sentinel_username,
            s.redis_sentinel_password.expose(),
            "redis_sentinel_username",
        )?,
    })
}

fn cluster_target(s: &Settings, entries: &[&str]) -> Result<ClusterTarget, ConfigError> {
    const KEY: &str = "redis_cluster_nodes";
    let nodes = entries.iter().map(|entry| host_port(KEY, entry)).collect::<Result<Vec<_>, _>>()?;
    let auth = Credentials {
        username: Some(s.redis_username.clone()).filter(|u| !u.is_empty()),
        password: Some(s.redis_password.expose().to_owned()).filter(|p| !p.is_empty()),
    };
    check_pair("redis_username", &auth.username, &auth.password)?;
    Ok(ClusterTarget { nodes, auth })
}

/// `host:port` or `[v6]:port`, an entry of the list setting `key`.
fn host_port(key: &'static str, entry: &str) -> Result<(String, u16), ConfigError> {
    let bad = || invalid(key, format!("{entry:?} is not host:port"));
    let (host, port) = entry.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().map_err(|_| bad())?;
    if host.is_empty() || port == 0 || host.contains(char::is_whitespace) {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Reads and checks the certificate files: readable, PEM, a key that matches its certificate.
fn tls_certificates(s: &Settings, tls_on: bool) -> Result<Option<TlsCertificates>, ConfigError> {
    let files = [
        ("redis_tls_ca_file", &s.redis_tls_ca_file),
        ("redis_tls_cert_file", &s.redis_tls_cert_file),
        ("redis_tls_key_file", &s.redis_tls_key_file),
    ];
    let given = |path: &Path| !path.as_os_str().is_empty();
    if !tls_on {
        if let Some((key, _)) = files.iter().find(|(_, path)| given(path)) {
            let how = "use a rediss:// URL, or redis_tls = true with redis_sentinels or redis_cluster_nodes";
            return Err(invalid(key, format!("is set but the connection to Redis is not TLS ({how})")));
        }
        return Ok(None);
    }
    let root_cert = given(&s.redis_tls_ca_file).then(|| ca_bundle(&s.redis_tls_ca_file)).transpose()?;
    let client_tls = match (given(&s.redis_tls_cert_file), given(&s.redis_tls_key_file)) {
        (false, false) => None,
        (true, false) => return Err(invalid("redis_tls_key_file", "is needed with redis_tls_cert_file")),
        (false, true) => return Err(invalid("redis_tls_cert_file", "is needed with redis_tls_key_file")),
        (true, true) => Some(client_identity(&s.redis_tls_cert_file, &s.redis_tls_key_file)?),
    };
    Ok(Some(TlsCertificates { client_tls, root_cert }))
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))
}

fn certificates(
    key: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(key, format!("{} is not PEM: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(invalid(key, format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

fn ca_bundle(path: &Path) -> Result<Vec<u8>, ConfigError> {
    const KEY: &str = "redis_tls_ca_file";
    let pem = read(KEY, path)?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(KEY, path, &pem)? {
        roots
            .add(cert)
            .map_err(|e| invalid(KEY, format!("{}: not a usable CA certificate: {e}", path.display())))?;
    }
    Ok(pem)
}

/// The client certificate chain and its key, checked to belong together.
fn client_identity(cert_path: &Path, key_path: &Path) -> Result<ClientTlsConfig, ConfigError> {
    let client_cert = read("redis_tls_cert_file", cert_path)?;
    let client_key = read("redis_tls_key_file", key_path)?;
    let chain = certificates("redis_tls_cert_file", cert_path, &client_cert)?;
    let key = PrivateKeyDer::from_pem_slice(&client_key).map_err(|e| {
        invalid("redis_tls_key_file", format!("{} holds no PEM private key: {e}", key_path.display()))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("redis_tls_key_file", e.to_string()))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, key)
        .map_err(|e| {
            invalid(
                "redis_tls_key_file",
                format!("{} does not fit redis_tls_cert_file: {e}", key_path.display()),
            )
        })?;
    Ok(ClientTlsConfig { client_cert, client_key })
}
