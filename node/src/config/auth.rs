//! The authentication settings, turned into a [`Verifier`] with its keys loaded (once for the check
//! at startup, once for the node).

use super::validate::invalid;
use super::{ConfigError, Settings};
use crate::auth::{KeySettings, Verifier};

/// The token verifier the settings describe; a bad key file or a missing key names its setting.
pub fn verifier(s: &Settings) -> Result<Verifier, ConfigError> {
    if s.jwt_leeway_ms > 300_000 {
        return Err(invalid("jwt_leeway_ms", "must be at most 300000 (5 minutes)"));
    }
    let keys = KeySettings {
        mode: s.auth,
        secret: s.jwt_secret.expose(),
        public_key_file: &s.jwt_public_key_file,
        audience: &s.jwt_audience,
        issuer: &s.jwt_issuer,
        leeway_ms: s.jwt_leeway_ms,
    };
    if !keys.secret.is_empty() && keys.secret.len() < 32 {
        return Err(invalid(
            "jwt_secret",
            "must be at least 32 bytes (HS256 needs a key as long as its hash)",
        ));
    }
    Verifier::new(&keys).map_err(|e| ConfigError::Invalid { key: e.key, problem: e.problem })
}
