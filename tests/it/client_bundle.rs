//! The socket.io-client bundle built into the binary: served by a node started anywhere, byte for
//! byte the npm package's files, revalidated by `ETag`, gzip-encoded on request; `client_bundle_dir`
//! replaces it. (A build without the bundle redirects to the CDN: a unit test in `bundle.rs`.)

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use reqwest::header::{ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE, ETAG, IF_NONE_MATCH, VARY};
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, Command};

use crate::helpers::{eventually, free_port, node_env, spawn_node, unique_prefix};

/// The package as `npm ci` installed it from tests/e2e/package-lock.json (integrity-checked).
const OFFICIAL_PACKAGE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/node_modules/socket.io-client");

/// Each URL under `/socket.io/`, the file it must equal inside the package, and its content type.
const SERVED: [(&str, &str, &str); 5] = [
    ("socket.io.js", "dist/socket.io.js", "application/javascript"),
    ("socket.io.min.js", "dist/socket.io.min.js", "application/javascript"),
    ("socket.io.js.map", "dist/socket.io.js.map", "application/json"),
    ("socket.io.min.js.map", "dist/socket.io.min.js.map", "application/json"),
    ("LICENSE", "LICENSE", "text/plain"),
];

/// A client that reports a redirect instead of following it: a build without the bundle answers
/// 307 to the CDN, and the test must see that, not the CDN's copy.
fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client")
}

fn official(path: &str) -> Vec<u8> {
    let file = Path::new(OFFICIAL_PACKAGE).join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!("{}: {e} (scripts/test.sh installs it: npm ci in tests/e2e)", file.display())
    })
}

/// A fresh empty directory, removed on drop.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn new(test: &str) -> Self {
        let dir = std::env::temp_dir().join(unique_prefix(test));
        std::fs::create_dir(&dir).expect("create a scratch directory");
        Self(dir)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `rollcall serve` as a child process working in `dir`, with nothing in its environment but the
/// test settings: no bundle setting, no node_modules reachable from its working directory.
async fn start_binary_in(dir: &Path) -> (Child, String) {
    let mut env: HashMap<String, String> = node_env(None, &unique_prefix("anywhere"), "anywhere");
    env.remove("ROLLCALL_CLIENT_BUNDLE_DIR");
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_rollcall"))
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .envs(env)
        .env("ROLLCALL_PORT", port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn rollcall");
    let url = format!("http://127.0.0.1:{port}");
    let ready = format!("{url}/readyz");
    eventually("the node is ready", Duration::from_secs(15), || {
        let ready = ready.clone();
        async move { reqwest::get(&ready).await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    (child, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_anywhere_serves_the_official_bundle_built_into_it() {
    let scratch = ScratchDir::new("bundle-cwd");
    let (_node, url) = start_binary_in(&scratch.0).await;
    let client = no_redirects();
    for (file, path, content_type) in SERVED {
        let response = client.get(format!("{url}/socket.io/{file}")).send().await.expect("GET");
        assert_eq!(
            response.status(),
            200,
            "{file} (307: the build embedded no bundle, see its cargo warning)"
        );
        let headers = response.headers();
        assert!(headers[CONTENT_TYPE].to_str().expect("ascii").starts_with(content_type), "{file}");
        assert!(headers.contains_key(ETAG), "{file}");
        assert!(!headers.contains_key(CONTENT_ENCODING), "{file}: asked for no encoding");
        let body = response.bytes().await.expect("body");
        assert!(body == official(path), "/socket.io/{file} differs from the package's {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_is_revalidated_by_etag_and_gzipped_on_request() {
    let node = spawn_node(None, &unique_prefix("etag"), "etag", &[]).await;
    let url = format!("{}/socket.io/socket.io.min.js", node.url());
    let client = no_redirects();

    let plain = client.get(&url).send().await.expect("GET");
    let plain_tag = plain.headers()[ETAG].clone();
    assert_eq!(plain.headers()[VARY], "accept-encoding");
    let again = client.get(&url).header(IF_NONE_MATCH, plain_tag.clone()).send().await.expect("GET");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()[ETAG], plain_tag);
    assert!(again.bytes().await.expect("body").is_empty());

    let gzipped = client.get(&url).header(ACCEPT_ENCODING, "gzip, br").send().await.expect("GET");
    assert_eq!(gzipped.status(), 200);
    assert_eq!(gzipped.headers()[CONTENT_ENCODING], "gzip");
    let gzip_tag = gzipped.headers()[ETAG].clone();
    assert_ne!(gzip_tag, plain_tag, "each encoding has its own strong tag");
    let compressed = gzipped.bytes().await.expect("body");
    assert!(compressed.len() < official("dist/socket.io.min.js").len() / 2);
    assert!(gunzip(&compressed).await == official("dist/socket.io.min.js"));
    let revalidated = client
        .get(&url)
        .header(ACCEPT_ENCODING, "gzip")
        .header(IF_NONE_MATCH, gzip_tag)
        .send()
        .await
        .expect("GET");
    assert_eq!(revalidated.status(), 304);
    let stale = client.get(&url).header(IF_NONE_MATCH, "\"some-other-version\"").send().await.expect("GET");
    assert_eq!(stale.status(), 200);
}

/// Decompresses with the system's `gzip`, an implementation independent of the node's.
async fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("gzip is installed");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = tokio::spawn(async move { stdin.write_all(&data).await });
    let output = child.wait_with_output().await.expect("gzip runs");
    writer.await.expect("writer task").expect("write to gzip");
    assert!(output.status.success(), "gzip -dc failed");
    output.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_bundle_dir_replaces_the_built_in_bundle_and_a_missing_one_is_ignored() {
    let custom = ScratchDir::new("bundle-dir");
    for (file, _, _) in &SERVED[..4] {
        std::fs::write(custom.0.join(file), format!("/* custom {file} */")).expect("write");
    }
    let dir = custom.0.to_str().expect("utf-8 temp path");
    let node =
        spawn_node(None, &unique_prefix("bundle-dir"), "dir", &[("ROLLCALL_CLIENT_BUNDLE_DIR", dir)]).await;
    let client = no_redirects();
    let get = |url: String| client.get(url).send();
    let body = get(format!("{}/socket.io/socket.io.js", node.url())).await.expect("GET");
    assert_eq!(body.text().await.expect("body"), "/* custom socket.io.js */");
    let license = get(format!("{}/socket.io/LICENSE", node.url())).await.expect("GET");
    assert_eq!(license.status(), 404, "the directory has no LICENSE; the built-in one is not mixed in");

    let missing = "/nonexistent/socket.io-client/dist";
    let node =
        spawn_node(None, &unique_prefix("bundle-dir"), "missing", &[("ROLLCALL_CLIENT_BUNDLE_DIR", missing)])
            .await;
    let body = get(format!("{}/socket.io/socket.io.js", node.url())).await.expect("GET");
    assert_eq!(body.status(), 200);
    assert!(body.bytes().await.expect("body") == official("dist/socket.io.js"));
}
