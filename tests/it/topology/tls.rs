//! Certificates made at test time (rcgen) and a `redis-server` that speaks only TLS.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use redis::{ClientTlsConfig, TlsCertificates};
use tokio::process::{Child, Command};

use crate::helpers::on_free_port;

/// A throw-away PKI in its own directory: a CA, a server certificate for 127.0.0.1 (not for
/// "localhost"), a client certificate, and a second CA that signed none of them.
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    /// Writes `ca.pem`, `server.pem`/`server.key`, `client.pem`/`client.key` and `other-ca.pem`.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("rollcall-pki-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("pki dir");
        let pki = Self { dir };
        let ca = pki.write_ca("ca", "rollcall test CA");
        pki.write_leaf("server", "127.0.0.1", &ca);
        pki.write_leaf("client", "rollcall-node", &ca);
        pki.write_ca("other-ca", "a CA nobody trusts");
        pki
    }

    /// The path of `name` (e.g. `"ca.pem"`) as a string for settings.
    pub fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// Writes a file of its own (e.g. a broken PEM) and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> String {
        std::fs::write(self.dir.join(name), contents).expect("write test file");
        self.path(name)
    }

    fn write_ca(&self, name: &str, common_name: &str) -> Issuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, common_name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signed CA");
        self.write(&format!("{name}.pem"), &cert.pem());
        Issuer::new(params, key)
    }

    fn write_leaf(&self, name: &str, subject: &str, ca: &Issuer<'static, KeyPair>) {
        let mut params = CertificateParams::new(vec![subject.to_owned()]).expect("leaf params");
        params.distinguished_name.push(DnType::CommonName, subject);
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, ca).expect("signed leaf");
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` with only a TLS port, killed on drop.
pub struct TlsRedis {
    child: Child,
    /// Its TLS port on 127.0.0.1.
    pub port: u16,
}

impl TlsRedis {
    /// Starts with the PKI's server certificate; `client_certs` = `tls-auth-clients yes`.
    pub async fn start(pki: &Pki, client_certs: bool) -> Self {
        let server = |port: u16| {
            let persistence = ["--save", "", "--appendonly", "no"].map(str::to_owned);
            Self::try_start("redis-server", persistence.to_vec(), pki, client_certs, port)
        };
        on_free_port("redis-server (TLS)", server).await
    }

    /// A sentinel that speaks only TLS, monitoring the TLS primary on `primary` as
    /// `master` (quorum 1), with its config file (rewritten by Sentinel) in the PKI's directory.
    pub async fn sentinel(pki: &Pki, primary: u16, master: &str) -> Self {
        let sentinel = |port: u16| {
            let monitor = format!("sentinel monitor {master} 127.0.0.1 {primary} 1\n");
            let file = pki.write(&format!("sentinel-{port}.conf"), &monitor);
            let args = [file.as_str(), "--tls-replication", "yes"].map(str::to_owned);
            Self::try_start("redis-sentinel", args.to_vec(), pki, false, port)
        };
        on_free_port("redis-sentinel (TLS)", sentinel).await
    }

    async fn try_start(
        program: &str,
        leading: Vec<String>,
        pki: &Pki,
        client_certs: bool,
        port: u16,
    ) -> Option<Self> {
        let mut child = Command::new(program)
            .args(leading)
            .args(["--port", "0", "--tls-port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--tls-cert-file", &pki.path("server.pem"), "--tls-key-file", &pki.path("server.key")])
            .args(["--tls-ca-cert-file", &pki.path("ca.pem")])
            .args(["--tls-auth-clients", if client_certs { "yes" } else { "no" }])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server and redis-sentinel must be installed (the test script installs them)");
        let client = tls_client(pki, port);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
            {
                return Some(Self { child, port });
            }
            if child.try_wait().ok().flatten().is_some() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{program} with TLS on port {port} did not answer PING within 10 s");
    }

    /// `rediss://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A test client that trusts the PKI's CA and shows its client certificate.
pub fn tls_client(pki: &Pki, port: u16) -> redis::Client {
    let read = |name: &str| std::fs::read(pki.path(name)).expect("read pki file");
    let certificates = TlsCertificates {
        client_tls: Some(ClientTlsConfig { client_cert: read("client.pem"), client_key: read("client.key") }),
        root_cert: Some(read("ca.pem")),
    };
    redis::Client::build_with_tls(format!("rediss://127.0.0.1:{port}"), certificates).expect("TLS client")
}
