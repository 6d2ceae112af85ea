//! The claims rollcall reads from a token, and the rooms a token allows.

use std::sync::Arc;

use super::{MAX_INFO_BYTES, Refusal, Verified};
use crate::count::{Identity, RoomName};

/// The claims, as sent. `exp`, `nbf`, `aud` and `iss` are checked by the JWT library.
#[derive(Debug, serde::Deserialize)]
pub(super) struct Claims {
    #[serde(default)]
    sub: serde_json::Value,
    exp: u64,
    #[serde(default)]
    info: Option<serde_json::Value>,
    #[serde(default)]
    rooms: Option<serde_json::Value>,
}

impl Claims {
    /// Checks the claims rollcall itself gives meaning to.
    pub(super) fn into_verified(self) -> Result<Verified, Refusal> {
        let user = match &self.sub {
            serde_json::Value::String(sub) if !sub.is_empty() && sub.len() <= 256 => sub.as_str(),
            _ => return Err(Refusal::BadSubject),
        };
        let info = match self.info {
            None | Some(serde_json::Value::Null) => None,
            Some(value @ serde_json::Value::Object(_)) => {
                let text = value.to_string();
                if text.len() > MAX_INFO_BYTES {
                    return Err(Refusal::BadInfo);
                }
                Some(Arc::from(text))
            }
            Some(_) => return Err(Refusal::BadInfo),
        };
        let rooms = match self.rooms {
            None | Some(serde_json::Value::Null) => RoomGrant::Any,
            Some(serde_json::Value::Array(list)) => RoomGrant::from_list(&list)?,
            Some(_) => return Err(Refusal::BadRooms),
        };
        Ok(Verified { identity: Identity { user: Arc::from(user), info }, expires: self.exp, rooms })
    }
}

/// The rooms a token allows: any, or names and prefixes (`"doc/*"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomGrant {
    /// No `rooms` claim: any room.
    Any,
    /// Only these.
    Only {
        /// Exact names.
        names: Vec<String>,
        /// Prefixes (the claim's entries ending in `*`, without it).
        prefixes: Vec<String>,
    },
}

impl RoomGrant {
    fn from_list(list: &[serde_json::Value]) -> Result<Self, Refusal> {
        let (mut names, mut prefixes) = (Vec::new(), Vec::new());
        for entry in list {
            let entry = entry.as_str().ok_or(Refusal::BadRooms)?;
            match entry.strip_suffix('*') {
                Some(prefix) => prefixes.push(prefix.to_owned()),
                None => names.push(entry.to_owned()),
            }
        }
        Ok(RoomGrant::Only { names, prefixes })
    }

    /// Whether `room` may be joined.
    pub fn allows(&self, room: &RoomName) -> bool {
        match self {
            RoomGrant::Any => true,
            RoomGrant::Only { names, prefixes } => {
                names.iter().any(|n| n == room.as_str())
                    || prefixes.iter().any(|p| room.as_str().starts_with(p.as_str()))
            }
        }
    }
}
