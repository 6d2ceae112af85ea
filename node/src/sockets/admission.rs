//! The handshake check (a socketioxide connect middleware): the token, the rooms asked for, the
//! per-user connection limit. A refusal is a CONNECT_ERROR whose `message` says why; nothing of a
//! refused handshake is ever counted.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::Glue;
use super::handshake::{self, Handshake};
use crate::auth::{AuthMode, Refusal, RoomGrant, Verified};
use crate::coordinator::Command;

/// A refused handshake: the text is the CONNECT_ERROR `message`.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one socket may do after its handshake: who it is and which rooms its token allows.
#[derive(Debug)]
pub struct SocketAuth {
    /// The signed user, if any.
    pub user: Option<Arc<str>>,
    /// Rooms it may join (updated by a fresh token).
    pub grant: Mutex<RoomGrant>,
}

/// Checks a handshake; `auth` is the handshake's `auth` object, `query` its query string.
pub async fn admit(
    glue: &Glue,
    auth: Option<&serde_json::Value>,
    query: Option<&str>,
) -> Result<Handshake, Refused> {
    let verified = identify(glue, auth).inspect_err(|refusal| glue.metrics.refuse_auth(refusal.reason()));
    let verified = verified.map_err(|refusal| Refused(refusal.message().to_owned()))?;
    let mut handshake = handshake::rooms(auth, query, glue.max_rooms_per_client).map_err(|error| {
        glue.metrics.refuse_join(error.reason());
        Refused(error.to_string())
    })?;
    if let Some(verified) = &verified {
        if let Some(room) = handshake.rooms.iter().find(|room| !verified.rooms.allows(room)) {
            glue.metrics.refuse_join("not_allowed");
            return Err(Refused(format!("room {:?} is not allowed by the token", room.as_str())));
        }
        if glue.max_connections_per_user > 0 && over_limit(glue, verified).await {
            glue.metrics.refuse("max_connections_per_user");
            return Err(Refused(format!(
                "this user already has {} connections, the most allowed",
                glue.max_connections_per_user
            )));
        }
    }
    handshake.verified = verified;
    Ok(handshake)
}

/// The verified token, `None` for an anonymous connection, or why the handshake is refused.
fn identify(glue: &Glue, auth: Option<&serde_json::Value>) -> Result<Option<Verified>, Refusal> {
    let token = auth.and_then(|a| a.get("token"));
    match (glue.verifier.mode(), token) {
        (AuthMode::Off, _) | (AuthMode::Optional, None | Some(serde_json::Value::Null)) => Ok(None),
        (AuthMode::Required, None | Some(serde_json::Value::Null)) => Err(Refusal::Missing),
        (_, Some(serde_json::Value::String(token))) => glue.verifier.verify(token).map(Some),
        (_, Some(_)) => Err(Refusal::Malformed),
    }
}

/// Whether `verified.identity.user` already holds `max_connections_per_user` sockets: as written
/// in the backend, plus this node's not yet written. A backend that cannot answer admits (the
/// limit is a guard, not a reason to keep everyone out during an outage).
async fn over_limit(glue: &Glue, verified: &Verified) -> bool {
    let user = verified.identity.user.clone();
    let Ok(written) = glue.backend.user_connections(&user).await else { return false };
    let (tx, rx) = oneshot::channel();
    if glue.commands.send(Command::Unwritten { user, reply: tx }).is_err() {
        return false;
    }
    let unwritten = rx.await.unwrap_or(0);
    let limit = i64::try_from(glue.max_connections_per_user).unwrap_or(i64::MAX);
    written + unwritten >= limit
}
