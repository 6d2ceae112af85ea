//! Room names: what a client may name, and how a name is refused.

use std::fmt;
use std::sync::Arc;

/// Longest room name, in bytes of UTF-8.
pub const MAX_ROOM_BYTES: usize = 256;

/// A valid room name: 1 to [`MAX_ROOM_BYTES`] bytes of UTF-8 without control characters. Cheap
/// to clone (shared).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(Arc<str>);

/// Why a room name was refused; the text is what the client reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// Not a JSON string.
    #[error("a room name must be a string")]
    NotAString,
    /// The empty string.
    #[error("a room name must not be empty")]
    Empty,
    /// Over [`MAX_ROOM_BYTES`].
    #[error("a room name must be at most {MAX_ROOM_BYTES} bytes of UTF-8 (got {0})")]
    TooLong(usize),
    /// Contains a control character.
    #[error("a room name must not contain control characters")]
    ControlCharacter,
}

impl RoomName {
    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, RoomNameError> {
        if name.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if name.len() > MAX_ROOM_BYTES {
            return Err(RoomNameError::TooLong(name.len()));
        }
        if name.chars().any(char::is_control) {
            return Err(RoomNameError::ControlCharacter);
        }
        Ok(Self(name.into()))
    }

    /// Validates a JSON value that should be a room name.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, RoomNameError> {
        value.as_str().ok_or(RoomNameError::NotAString).and_then(Self::new)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_and_refused_names() {
        assert!(RoomName::new("/blog/2026/hello-world?x=1").is_ok());
        assert!(RoomName::new("a,b,c").is_ok(), "commas are part of the name");
        assert!(RoomName::new("文書-ドキュメント").is_ok());
        assert!(RoomName::new(&"é".repeat(128)).is_ok(), "256 bytes");
        assert_eq!(RoomName::new(&"é".repeat(129)), Err(RoomNameError::TooLong(258)));
        assert_eq!(RoomName::new(""), Err(RoomNameError::Empty));
        assert_eq!(RoomName::new("a\u{0}b"), Err(RoomNameError::ControlCharacter));
        assert_eq!(RoomName::new("line\nbreak"), Err(RoomNameError::ControlCharacter));
        assert_eq!(RoomName::from_json(&serde_json::json!(42)), Err(RoomNameError::NotAString));
    }
}
