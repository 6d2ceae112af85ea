//! `--users N`: the swarm's clients share N signed identities, as the tabs of N people would.
//! Client `g` (its global id) is user `g % N`, whose `sub` is `user-<i>`; its token is HS256
//! over `--jwt-secret`, valid for a day, sent in the Socket.IO CONNECT as `{"token": ...}`.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, EncodingKey, Header};

/// How long the swarm's tokens are valid.
const TOKEN_LIFETIME_S: u64 = 24 * 3600;
/// `user` of a client without an identity.
pub const NO_USER: u32 = u32::MAX;

/// The run's identities, and each one's CONNECT packet once signed.
pub struct Identities {
    count: u32,
    key: EncodingKey,
    /// Per user: `40{"token":"..."}`, signed on first use.
    packets: Vec<Option<Arc<str>>>,
}

impl std::fmt::Debug for Identities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identities").field("count", &self.count).finish_non_exhaustive()
    }
}

impl Identities {
    /// `count` identities signed with `secret`; `None` for `count == 0` (anonymous clients).
    pub fn new(count: u32, secret: &str) -> Option<Self> {
        (count > 0).then(|| Self {
            count,
            key: EncodingKey::from_secret(secret.as_bytes()),
            packets: vec![None; count as usize],
        })
    }

    /// The user of client `global`.
    pub fn user_of(&self, global: u64) -> u32 {
        (global % u64::from(self.count)) as u32
    }

    /// The Socket.IO CONNECT packet of `user` (`None` if it cannot be signed).
    pub fn connect_packet(&mut self, user: u32) -> Option<Arc<str>> {
        let slot = self.packets.get_mut(user as usize)?;
        if slot.is_none() {
            let token = token(&self.key, user, crate::messages::now_us() / 1_000_000)?;
            *slot = Some(format!("40{}", serde_json::json!({ "token": token })).into());
        }
        slot.clone()
    }
}

/// The `sub` of user `user`.
pub fn subject(user: u32) -> String {
    format!("user-{user}")
}

fn token(key: &EncodingKey, user: u32, now_s: u64) -> Option<String> {
    let claims = serde_json::json!({ "sub": subject(user), "exp": now_s + TOKEN_LIFETIME_S });
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key).ok()
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    #[test]
    fn clients_share_identities_round_robin_with_verifiable_tokens() {
        let mut ids = Identities::new(3, "a-swarm-secret-long-enough-for-hs256!").expect("some");
        assert_eq!((0..7).map(|g| ids.user_of(g)).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2, 0]);
        let packet = ids.connect_packet(2).expect("signed");
        let auth: serde_json::Value = serde_json::from_str(&packet[2..]).expect("json");
        let token = auth["token"].as_str().expect("token");
        let key = DecodingKey::from_secret(b"a-swarm-secret-long-enough-for-hs256!");
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &Validation::new(Algorithm::HS256))
            .expect("verifies");
        assert_eq!(data.claims["sub"], "user-2");
        assert!(ids.connect_packet(3).is_none(), "no such user");
        assert!(Identities::new(0, "x").is_none());
    }
}
