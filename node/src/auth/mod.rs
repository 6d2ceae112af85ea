//! Signed identities: the application's backend signs who a visitor is (a JWT), the node verifies
//! it at the handshake with keys loaded once at startup, and never fetches anything at connect.
//!
//! Allowed algorithms are exactly those of the configured keys: HS256 with `jwt_secret`, RS256 or
//! ES256 with `jwt_public_key_file` (the key's type decides). A token is refused before any
//! signature check when its header names another algorithm (`none`, or HS256 against an RSA key:
//! the classic confusion). A refusal names its reason and nothing else.

mod claims;

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use self::claims::Claims;
pub use self::claims::RoomGrant;
use crate::count::Identity;

/// Largest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Largest `info` claim, serialized, in bytes.
pub const MAX_INFO_BYTES: usize = 1024;

/// Whether clients must, may or do not sign in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Tokens are ignored: every connection is anonymous.
    Off,
    /// Anonymous and signed clients are both allowed.
    Optional,
    /// Every client must present a valid token.
    Required,
}

/// A verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Who, and their public info.
    pub identity: Identity,
    /// When the token expires (Unix seconds).
    pub expires: u64,
    /// The rooms this user may join.
    pub rooms: RoomGrant,
}

/// Why a token was refused: the label of `rollcall_auth_refused_total` and what the client reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `auth = required` and no token.
    Missing,
    /// Over [`MAX_TOKEN_BYTES`].
    TooLarge,
    /// Not a JWT, or a claim of the wrong type.
    Malformed,
    /// Past `exp` (plus leeway).
    Expired,
    /// Before `nbf` (minus leeway).
    NotYetValid,
    /// The signature does not verify with the configured key.
    BadSignature,
    /// `aud` is not `jwt_audience`.
    WrongAudience,
    /// `iss` is not `jwt_issuer`.
    WrongIssuer,
    /// `alg` is not one of the configured ones (`none` included).
    Algorithm,
    /// `sub` missing or not a non-empty string.
    BadSubject,
    /// `info` not an object of at most 1 KiB.
    BadInfo,
    /// `rooms` not a list of names and prefixes.
    BadRooms,
}

impl Refusal {
    /// The metric label.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Missing => "missing",
            Refusal::TooLarge => "too_large",
            Refusal::Malformed => "malformed",
            Refusal::Expired => "expired",
            Refusal::NotYetValid => "not_yet_valid",
            Refusal::BadSignature => "bad_signature",
            Refusal::WrongAudience => "wrong_audience",
            Refusal::WrongIssuer => "wrong_issuer",
            Refusal::Algorithm => "algorithm",
            Refusal::BadSubject => "bad_subject",
            Refusal::BadInfo => "bad_info",
            Refusal::BadRooms => "bad_rooms",
        }
    }

    /// What the client reads (the CONNECT_ERROR `message`, or the `token` ack's `error`).
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => "a token is required (auth.token)",
            Refusal::TooLarge => "the token is larger than 8 KiB",
            Refusal::Malformed => "the token is malformed",
            Refusal::Expired => "the token has expired",
            Refusal::NotYetValid => "the token is not valid yet",
            Refusal::BadSignature => "the token's signature is invalid",
            Refusal::WrongAudience => "the token is for another audience",
            Refusal::WrongIssuer => "the token is from another issuer",
            Refusal::Algorithm => "the token's algorithm is not allowed",
            Refusal::BadSubject => "the token's sub must be a non-empty string",
            Refusal::BadInfo => "the token's info must be a JSON object of at most 1 KiB",
            Refusal::BadRooms => "the token's rooms must be a list of room names or prefixes ending in *",
        }
    }
}

/// The verification settings, with keys loaded.
#[derive(Clone)]
pub struct Verifier {
    mode: AuthMode,
    /// Each key with the validation for its algorithm, built once: a verifier is cloned into
    /// every node task that checks tokens, and each check used to clone the validation too.
    keys: Arc<Vec<(Algorithm, DecodingKey, Validation)>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let algorithms: Vec<Algorithm> = self.keys.iter().map(|(a, _, _)| *a).collect();
        f.debug_struct("Verifier").field("mode", &self.mode).field("algorithms", &algorithms).finish()
    }
}

/// What [`Verifier::new`] needs from the settings.
pub struct KeySettings<'a> {
    /// `auth`.
    pub mode: AuthMode,
    /// `jwt_secret` (empty: none).
    pub secret: &'a str,
    /// `jwt_public_key_file` (empty: none).
    pub public_key_file: &'a Path,
    /// `jwt_audience` (empty: not checked).
    pub audience: &'a str,
    /// `jwt_issuer` (empty: not checked).
    pub issuer: &'a str,
    /// `jwt_leeway_ms`.
    pub leeway_ms: u64,
}

/// Why the keys could not be loaded: the setting and the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// The setting's key.
    pub key: &'static str,
    /// What is wrong.
    pub problem: String,
}

impl Verifier {
    /// Loads the keys once; with `auth = off` there is nothing to load.
    pub fn new(settings: &KeySettings<'_>) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        if settings.mode != AuthMode::Off {
            if !settings.secret.is_empty() {
                keys.push((Algorithm::HS256, DecodingKey::from_secret(settings.secret.as_bytes())));
            }
            if !settings.public_key_file.as_os_str().is_empty() {
                keys.push(public_key(settings.public_key_file)?);
            }
            if keys.is_empty() {
                let problem = "auth is on, but neither jwt_secret nor jwt_public_key_file is set".to_owned();
                return Err(KeyError { key: "auth", problem });
            }
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = settings.leeway_ms.div_ceil(1000);
        validation.validate_nbf = true;
        if settings.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[settings.audience]);
        }
        if !settings.issuer.is_empty() {
            validation.set_issuer(&[settings.issuer]);
        }
        let keys = keys
            .into_iter()
            .map(|(algorithm, key)| {
                let mut for_key = validation.clone();
                for_key.algorithms = vec![algorithm];
                (algorithm, key, for_key)
            })
            .collect();
        Ok(Self { mode: settings.mode, keys: Arc::new(keys) })
    }

    /// `auth`.
    pub fn mode(&self) -> AuthMode {
        self.mode
    }

    /// Verifies `token`.
    pub fn verify(&self, token: &str) -> Result<Verified, Refusal> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Refusal::TooLarge);
        }
        let algorithm = header_algorithm(token)?;
        let (_, key, validation) =
            self.keys.iter().find(|(a, _, _)| a.eq(&algorithm)).ok_or(Refusal::Algorithm)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| refusal(e.kind()))?;
        data.claims.into_verified()
    }
}

/// The algorithm a token's header names, read without trusting the rest.
fn header_algorithm(token: &str) -> Result<Algorithm, Refusal> {
    let header = token.split('.').next().ok_or(Refusal::Malformed)?;
    let bytes =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header).map_err(|_| Refusal::Malformed)?;
    let header: serde_json::Value = serde_json::from_slice(&bytes).map_err(|_| Refusal::Malformed)?;
    let name = header.get("alg").and_then(serde_json::Value::as_str).ok_or(Refusal::Malformed)?;
    name.parse::<Algorithm>().map_err(|_| Refusal::Algorithm)
}

fn refusal(kind: &ErrorKind) -> Refusal {
    match kind {
        ErrorKind::ExpiredSignature => Refusal::Expired,
        ErrorKind::ImmatureSignature => Refusal::NotYetValid,
        ErrorKind::InvalidSignature => Refusal::BadSignature,
        ErrorKind::InvalidAudience => Refusal::WrongAudience,
        ErrorKind::InvalidIssuer => Refusal::WrongIssuer,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Refusal::Algorithm,
        ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => Refusal::BadSubject,
        _ => Refusal::Malformed,
    }
}

/// Reads an RSA (RS256) or EC P-256 (ES256) public key from a PEM file.
fn public_key(path: &Path) -> Result<(Algorithm, DecodingKey), KeyError> {
    let error = |problem: String| KeyError { key: "jwt_public_key_file", problem };
    let pem = std::fs::read(path).map_err(|e| error(format!("{}: {e}", path.display())))?;
    if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
        return Ok((Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
        return Ok((Algorithm::ES256, key));
    }
    Err(error(format!("{} is not a PEM RSA or EC (P-256) public key", path.display())))
}

#[cfg(test)]
mod tests;
