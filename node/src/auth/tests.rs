//! Every refusal, with real signatures: HS256 from a secret, RS256 and ES256 from PEM keys made
//! by the `openssl` command at test time.

use std::path::PathBuf;
use std::process::Command;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::count::RoomName;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn settings(secret: &str, key: &Path) -> KeySettings<'static> {
    let secret: &'static str = Box::leak(secret.to_owned().into_boxed_str());
    let key: &'static Path = Box::leak(key.to_path_buf().into_boxed_path());
    KeySettings {
        mode: AuthMode::Required,
        secret,
        public_key_file: key,
        audience: "",
        issuer: "",
        leeway_ms: 0,
    }
}

fn hs(claims: &Value, secret: &str) -> String {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
        .expect("sign")
}

/// A key pair made with openssl in a fresh temp dir: (private PEM, public PEM path).
fn keypair(kind: &str) -> (Vec<u8>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("rollcall-auth-{kind}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (private, public) = (dir.join("private.pem"), dir.join("public.pem"));
    let generate: Vec<&str> = match kind {
        "rsa" => vec!["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"],
        _ => vec!["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"],
    };
    let ok = Command::new("openssl").args(&generate).arg(&private).status().expect("openssl").success();
    assert!(ok, "openssl genpkey");
    let ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl pkey -pubout");
    (std::fs::read(&private).expect("read"), public)
}

#[test]
fn a_good_hs256_token_gives_the_identity_and_the_grant() {
    let verifier = Verifier::new(&settings("s3cret", Path::new(""))).expect("keys");
    let token = hs(
        &json!({ "sub": "alice", "exp": now() + 60, "info": { "name": "Alice" }, "rooms": ["doc/1", "team/*"] }),
        "s3cret",
    );
    let verified = verifier.verify(&token).expect("valid");
    assert_eq!(&*verified.identity.user, "alice");
    assert_eq!(verified.identity.info.as_deref(), Some(r#"{"name":"Alice"}"#));
    let room = |n: &str| RoomName::new(n).expect("room");
    assert!(verified.rooms.allows(&room("doc/1")));
    assert!(verified.rooms.allows(&room("team/red")));
    assert!(!verified.rooms.allows(&room("doc/2")));
}

#[test]
fn every_refusal_names_its_reason() {
    let verifier = Verifier::new(&settings("s3cret", Path::new(""))).expect("keys");
    let base = |extra: Value| {
        let mut claims = json!({ "sub": "bob", "exp": now() + 60 });
        claims.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        claims
    };
    let none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(base(json!({})).to_string()),
    );
    let cases: Vec<(String, Refusal)> = vec![
        ("not.a.jwt".to_owned(), Refusal::Malformed),
        ("x".repeat(MAX_TOKEN_BYTES + 1), Refusal::TooLarge),
        (hs(&base(json!({ "exp": now() - 120 })), "s3cret"), Refusal::Expired),
        (hs(&base(json!({ "nbf": now() + 120 })), "s3cret"), Refusal::NotYetValid),
        (hs(&base(json!({})), "another secret"), Refusal::BadSignature),
        (none, Refusal::Algorithm),
        (hs(&json!({ "exp": now() + 60 }), "s3cret"), Refusal::BadSubject),
        (hs(&base(json!({ "sub": 42 })), "s3cret"), Refusal::BadSubject),
        (hs(&base(json!({ "sub": "" })), "s3cret"), Refusal::BadSubject),
        (hs(&base(json!({ "info": "text" })), "s3cret"), Refusal::BadInfo),
        (hs(&base(json!({ "info": { "bio": "x".repeat(2000) } })), "s3cret"), Refusal::BadInfo),
        (hs(&base(json!({ "rooms": "all" })), "s3cret"), Refusal::BadRooms),
        (hs(&json!({ "sub": "carol" }), "s3cret"), Refusal::Malformed),
    ];
    for (token, expected) in cases {
        assert_eq!(
            verifier.verify(&token).map(|v| v.identity.user),
            Err(expected),
            "{}",
            &token[..token.len().min(60)]
        );
    }
}

#[test]
fn audience_issuer_and_leeway_are_checked() {
    let mut s = settings("s3cret", Path::new(""));
    s.audience = "rollcall";
    s.issuer = "https://app.example";
    s.leeway_ms = 30_000;
    let verifier = Verifier::new(&s).expect("keys");
    let good = json!({ "sub": "d", "exp": now() - 10, "aud": "rollcall", "iss": "https://app.example" });
    assert!(verifier.verify(&hs(&good, "s3cret")).is_ok(), "10 s past exp is within the 30 s leeway");
    let mut wrong = good.clone();
    wrong["aud"] = json!("other");
    assert_eq!(verifier.verify(&hs(&wrong, "s3cret")).err(), Some(Refusal::WrongAudience));
    let mut wrong = good;
    wrong["iss"] = json!("https://evil.example");
    assert_eq!(verifier.verify(&hs(&wrong, "s3cret")).err(), Some(Refusal::WrongIssuer));
}

#[test]
fn rs256_and_es256_keys_verify_and_refuse_algorithm_confusion() {
    for (kind, algorithm) in [("rsa", Algorithm::RS256), ("ec", Algorithm::ES256)] {
        let (private, public) = keypair(kind);
        let verifier = Verifier::new(&settings("", &public)).expect("keys");
        let key = match kind {
            "rsa" => EncodingKey::from_rsa_pem(&private),
            _ => EncodingKey::from_ec_pem(&private),
        }
        .expect("private key");
        let claims = json!({ "sub": "erin", "exp": now() + 60 });
        let token = jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).expect("sign");
        assert!(verifier.verify(&token).is_ok(), "{kind}");
        // HS256 signed with the public key's bytes as the secret: refused by algorithm first.
        let pem = std::fs::read(&public).expect("pem");
        let confused =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(&pem))
                .expect("sign");
        assert_eq!(verifier.verify(&confused).err(), Some(Refusal::Algorithm), "{kind}");
    }
}

#[test]
fn bad_key_settings_name_the_key() {
    let missing = Verifier::new(&settings("", Path::new(""))).expect_err("no key");
    assert_eq!(missing.key, "auth");
    let file = std::env::temp_dir().join(format!("rollcall-not-a-key-{}", std::process::id()));
    std::fs::write(&file, "hello").expect("write");
    let bad = Verifier::new(&settings("", &file)).expect_err("not a key");
    assert_eq!(bad.key, "jwt_public_key_file");
}
