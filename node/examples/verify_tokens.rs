//! What verifying a token costs a node at connect: `rollcall_node::auth::Verifier::verify` (the
//! code the handshake runs: header check, signature, claims) timed one call at a time, for HS256
//! and for the public-key algorithms whose private keys are given.
//!
//! `cargo run --release -p rollcall-node --example verify_tokens -- [N] [ES256_KEY.pem] [RS256_KEY.pem]`
//! (PKCS#8 private keys; `bench/users.sh` makes them with openssl). Prints one line per
//! algorithm: calls, mean, p50, p99 in microseconds.

use std::path::{Path, PathBuf};
use std::time::Instant;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rollcall_node::auth::{AuthMode, KeySettings, Verifier};

const SECRET: &str = "a-benchmark-secret-that-is-long-enough-for-hs256";
/// Distinct tokens signed per algorithm, verified round robin (no cache could help).
const TOKENS: usize = 1000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let calls: usize = args.first().map(|n| n.parse()).transpose()?.unwrap_or(20_000);
    let dir = std::env::temp_dir().join(format!("rollcall-verify-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    run("HS256", calls, Algorithm::HS256, &hs, SECRET, Path::new(""))?;
    for (index, algorithm) in [(1, Algorithm::ES256), (2, Algorithm::RS256)] {
        let Some(private) = args.get(index).map(PathBuf::from) else { continue };
        let pem = std::fs::read(&private)?;
        let key = match algorithm {
            Algorithm::ES256 => EncodingKey::from_ec_pem(&pem)?,
            _ => EncodingKey::from_rsa_pem(&pem)?,
        };
        let public = dir.join(format!("{algorithm:?}.pub.pem"));
        let output =
            std::process::Command::new("openssl").args(["pkey", "-pubout", "-in"]).arg(&private).output()?;
        std::fs::write(&public, output.stdout)?;
        run(&format!("{algorithm:?}"), calls, algorithm, &key, "", &public)?;
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

fn run(
    name: &str,
    calls: usize,
    algorithm: Algorithm,
    key: &EncodingKey,
    secret: &str,
    public_key_file: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let settings = KeySettings {
        mode: AuthMode::Required,
        secret,
        public_key_file,
        audience: "",
        issuer: "",
        leeway_ms: 5000,
    };
    let verifier = Verifier::new(&settings).map_err(|e| format!("{}: {}", e.key, e.problem))?;
    let exp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs() + 3600;
    let tokens = (0..TOKENS)
        .map(|i| {
            let claims =
                serde_json::json!({ "sub": format!("user-{i}"), "exp": exp, "info": { "name": "A" } });
            jsonwebtoken::encode(&Header::new(algorithm), &claims, key)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // Warm up, and check that every token is accepted.
    for token in &tokens {
        verifier.verify(token).map_err(|refusal| format!("{name}: refused: {}", refusal.message()))?;
    }
    let mut took_ns = Vec::with_capacity(calls);
    let started = Instant::now();
    for i in 0..calls {
        let at = Instant::now();
        let verified = verifier.verify(&tokens[i % TOKENS]);
        took_ns.push(at.elapsed().as_nanos() as u64);
        std::hint::black_box(verified.is_ok());
    }
    let total = started.elapsed();
    took_ns.sort_unstable();
    let at = |q: f64| took_ns[((took_ns.len() - 1) as f64 * q) as usize] as f64 / 1000.0;
    println!(
        "{name}: {calls} verifications, mean {:.2} µs, p50 {:.2} µs, p99 {:.2} µs ({} tokens of {} bytes)",
        total.as_secs_f64() * 1e6 / calls as f64,
        at(0.5),
        at(0.99),
        tokens.len(),
        tokens[0].len(),
    );
    Ok(())
}
