//! Embeds the official socket.io-client browser bundle in the node, so every build serves
//! `/socket.io/socket.io.js` itself: no node_modules, working directory or network at run time.
//!
//! The bundle is someone else's code, so the repository does not hold it. This script takes the
//! pinned npm tarball from the first place that has it:
//! 1. `ROLLCALL_CLIENT_BUNDLE_SRC`: the `.tgz` (checked against [`INTEGRITY`]), or an installed
//!    package / its `dist/` folder (npm checked it when installing; here only its version is);
//! 2. the tarball an earlier run kept in OUT_DIR (checked again);
//! 3. the npm registry (checked, then kept in OUT_DIR so rebuilds do not fetch it again).
//!
//! A source that is wrong (integrity mismatch, other version, missing file) fails the build. No
//! source at all (offline, registry unreachable) only warns: the node then redirects to the CDN.
//! `ROLLCALL_REQUIRE_CLIENT_BUNDLE=1` makes that an error too (the container build sets it).

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use std::{env, fs};

use base64::Engine as _;
use sha2::{Digest, Sha512};

/// The socket.io-client release embedded; tests/e2e/package-lock.json pins the same one.
const VERSION: &str = "4.8.1";
/// npm's `dist.integrity` of that release's tarball (also in tests/e2e/package-lock.json).
const INTEGRITY: &str =
    "sha512-hJVXfu3E28NmzGk8o1sHhN3om52tRvwYeidbj7xKy2eIIse5IoKX3USlS6Tqt3BHAtflLIkCQBkzVrEEfWUyYQ==";
/// The files embedded, as paths inside the package; each is served under its file name.
const FILES: [&str; 5] = [
    "dist/socket.io.js",
    "dist/socket.io.js.map",
    "dist/socket.io.min.js",
    "dist/socket.io.min.js.map",
    "LICENSE",
];
const SRC_VAR: &str = "ROLLCALL_CLIENT_BUNDLE_SRC";
const REQUIRE_VAR: &str = "ROLLCALL_REQUIRE_CLIENT_BUNDLE";
/// The registry's answer is a few hundred KiB; anything far larger is not the package.
const MAX_TARBALL_BYTES: u64 = 16 << 20;

/// Why no bundle was embedded.
enum Failure {
    /// Nothing to embed (offline, registry unreachable): warn, build without the bundle.
    Unavailable(String),
    /// A copy was found and is wrong: fail the build.
    Invalid(String),
}

/// The package files to embed, and where they came from (named in the generated file).
struct Package {
    files: Vec<(&'static str, Vec<u8>)>,
    origin: String,
}

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed={SRC_VAR}");
    println!("cargo::rerun-if-env-changed={REQUIRE_VAR}");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let required = env::var(REQUIRE_VAR).is_ok_and(|v| !v.is_empty() && v != "0");
    let generated = match obtain(&out_dir) {
        Ok(package) => match embed(&out_dir, &package) {
            Ok(code) => code,
            Err(e) => return fail(&format!("could not write the socket.io-client files to OUT_DIR: {e}")),
        },
        Err(Failure::Invalid(why)) => return fail(&why),
        Err(Failure::Unavailable(why)) if required => return fail(&format!("{why} ({REQUIRE_VAR} is set)")),
        Err(Failure::Unavailable(why)) => {
            println!(
                "cargo::warning=socket.io-client {VERSION} is not embedded: {why}. The node will redirect \
                 /socket.io/socket.io.js to the CDN. Offline, set {SRC_VAR} to the package's .tgz or dist/ folder."
            );
            // A path that never exists makes cargo run this script again on the next build.
            println!("cargo::rerun-if-changed={}", out_dir.join("retry-fetching-the-bundle").display());
            format!("const EMBEDDED: Result<Embedded, &str> = Err({why:?});\n")
        }
    };
    if let Err(e) = fs::write(out_dir.join("client_bundle.rs"), generated) {
        fail(&format!("could not write client_bundle.rs: {e}"));
    }
}

fn fail(why: &str) {
    println!("cargo::error=socket.io-client {VERSION}: {why}");
}

fn obtain(out_dir: &Path) -> Result<Package, Failure> {
    if let Some(src) = env::var_os(SRC_VAR).filter(|v| !v.is_empty()) {
        let src = PathBuf::from(src);
        if src.is_relative() {
            // Build scripts run in node/, not where cargo was called: a relative path would mislead.
            return Err(Failure::Invalid(format!("{SRC_VAR}={}: give an absolute path", src.display())));
        }
        println!("cargo::rerun-if-changed={}", src.display());
        return if src.is_dir() { from_directory(&src) } else { from_tarball_file(&src) };
    }
    let cached = out_dir.join(format!("socket.io-client-{VERSION}.tgz"));
    if let Ok(tarball) = fs::read(&cached) {
        if integrity_of(&tarball) == INTEGRITY {
            return unpack(&tarball, format!("{} (cached)", registry_url()));
        }
        println!("cargo::warning=the cached {} is damaged; fetching it again", cached.display());
    }
    let url = registry_url();
    let tarball = download(&url)?;
    check_integrity(&tarball, &url)?;
    // Written aside and renamed, so an interrupted build never leaves a truncated cache.
    let partial = cached.with_extension("tgz.partial");
    if fs::write(&partial, &tarball).and_then(|()| fs::rename(&partial, &cached)).is_err() {
        println!(
            "cargo::warning=could not keep the tarball in {}; the next build fetches it again",
            out_dir.display()
        );
    }
    unpack(&tarball, url)
}

fn registry_url() -> String {
    format!("https://registry.npmjs.org/socket.io-client/-/socket.io-client-{VERSION}.tgz")
}

fn from_tarball_file(path: &Path) -> Result<Package, Failure> {
    let tarball =
        fs::read(path).map_err(|e| Failure::Invalid(format!("{SRC_VAR}={}: {e}", path.display())))?;
    check_integrity(&tarball, &path.display().to_string())?;
    unpack(&tarball, path.display().to_string())
}

/// An installed package (`node_modules/socket.io-client`) or its `dist/` folder.
fn from_directory(dir: &Path) -> Result<Package, Failure> {
    let root = if dir.join("dist").is_dir() { dir } else { dir.parent().unwrap_or(dir) };
    let invalid = |what: String| Failure::Invalid(format!("{SRC_VAR}={}: {what}", dir.display()));
    let manifest = fs::read(root.join("package.json"))
        .map_err(|e| invalid(format!("no package.json beside dist/ ({e})")))?;
    let manifest: serde_json::Value =
        serde_json::from_slice(&manifest).map_err(|e| invalid(format!("package.json: {e}")))?;
    if manifest["name"] != "socket.io-client" || manifest["version"] != VERSION {
        let found = format!("{} {}", manifest["name"], manifest["version"]);
        return Err(invalid(format!("is {found}, this build embeds socket.io-client {VERSION}")));
    }
    let files = FILES
        .iter()
        .map(|file| {
            fs::read(root.join(file)).map(|data| (*file, data)).map_err(|e| invalid(format!("{file}: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok(Package { files, origin: root.display().to_string() })
}

fn download(url: &str) -> Result<Vec<u8>, Failure> {
    let unavailable = |e: ureq::Error| Failure::Unavailable(format!("could not fetch {url}: {e}"));
    // The system's trusted roots, as npm and curl use (a company proxy's CA is there, not in
    // Mozilla's list); proxies come from HTTPS_PROXY / NO_PROXY. The integrity check, not TLS,
    // is what vouches for the bytes.
    let tls = ureq::tls::TlsConfig::builder().root_certs(ureq::tls::RootCerts::PlatformVerifier).build();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let mut response = agent.get(url).call().map_err(unavailable)?;
    response.body_mut().with_config().limit(MAX_TARBALL_BYTES).read_to_vec().map_err(unavailable)
}

fn integrity_of(data: &[u8]) -> String {
    format!("sha512-{}", base64::engine::general_purpose::STANDARD.encode(Sha512::digest(data)))
}

fn check_integrity(tarball: &[u8], from: &str) -> Result<(), Failure> {
    let found = integrity_of(tarball);
    if found == INTEGRITY {
        return Ok(());
    }
    Err(Failure::Invalid(format!("integrity mismatch for {from}: expected {INTEGRITY}, got {found}")))
}

/// Takes [`FILES`] out of the verified tarball (npm packs everything under `package/`).
fn unpack(tarball: &[u8], origin: String) -> Result<Package, Failure> {
    let broken = |e: std::io::Error| Failure::Invalid(format!("cannot read the tarball from {origin}: {e}"));
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tarball));
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let path = entry.path().map_err(broken)?.to_string_lossy().into_owned();
        if let Some(file) = FILES.iter().find(|file| path.strip_prefix("package/") == Some(**file)) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(broken)?;
            files.push((*file, data));
        }
    }
    if let Some(missing) = FILES.iter().find(|file| !files.iter().any(|(name, _)| name == *file)) {
        return Err(Failure::Invalid(format!("the tarball from {origin} has no package/{missing}")));
    }
    Ok(Package { files, origin })
}

/// Writes each file and its gzip form to OUT_DIR and returns the code that embeds them.
fn embed(out_dir: &Path, package: &Package) -> std::io::Result<String> {
    let dir = out_dir.join("socket.io-client");
    fs::create_dir_all(&dir)?;
    let mut entries = String::new();
    for (path, data) in &package.files {
        let name = Path::new(path).file_name().and_then(|n| n.to_str()).unwrap_or(path);
        fs::write(dir.join(name), data)?;
        fs::write(dir.join(format!("{name}.gz")), gzip(data)?)?;
        // A strong validator from the content: equal bytes, equal tag, on every node and build.
        let etag: String = Sha512::digest(data)[..16].iter().fold(String::new(), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        });
        let include =
            |file: &str| format!("include_bytes!(concat!(env!(\"OUT_DIR\"), \"/socket.io-client/{file}\"))");
        let _ = writeln!(
            entries,
            "        EmbeddedFile {{ name: {name:?}, body: {}, gzip: {}, etag: \"{etag}\" }},",
            include(name),
            include(&format!("{name}.gz")),
        );
    }
    Ok(format!(
        "// Generated by node/build.rs: socket.io-client {VERSION} from {origin}.\n\
         const EMBEDDED: Result<Embedded, &str> = \
         Ok(Embedded {{\n    version: {VERSION:?},\n    files: &[\n{entries}    ],\n}});\n",
        origin = package.origin,
    ))
}

fn gzip(data: &[u8]) -> std::io::Result<Vec<u8>> {
    // flate2 writes mtime 0 in the header: the same input gives the same bytes (reproducible builds).
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data)?;
    encoder.finish()
}
