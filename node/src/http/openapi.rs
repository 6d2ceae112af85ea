//! `GET /api/openapi.json`: the document of this node's API. `assets/openapi.json` describes a
//! node with `api_keys` set (the protected operations list the `apiKey` scheme and a 401;
//! `/api/presence` lists the key as optional). Each node serves it adjusted to its own settings,
//! once at startup, so that a client (or schemathesis) reading it learns exactly which operations
//! want the key: none without `api_keys`, and `/api/presence` too with `public_presence = false`.

use serde_json::Value;

const DOCUMENT: &str = include_str!("../assets/openapi.json");
const PRESENCE: &str = "/api/presence";

/// The document for a node whose `api_keys` are `keyed` (non-empty) and `public_presence`.
pub fn document(keyed: bool, public_presence: bool) -> String {
    let mut document: Value = match serde_json::from_str(DOCUMENT) {
        Ok(document) => document,
        // Covered by the unit tests below: the embedded file is valid JSON.
        Err(_) => return DOCUMENT.to_owned(),
    };
    if let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, operations) in paths.iter_mut() {
            let Some(operations) = operations.as_object_mut() else { continue };
            for operation in operations.values_mut().filter_map(Value::as_object_mut) {
                if !operation.contains_key("security") {
                    continue;
                }
                if keyed && (path != PRESENCE || !public_presence) {
                    operation.insert("security".to_owned(), serde_json::json!([{ "apiKey": [] }]));
                } else {
                    operation.remove("security");
                    if let Some(responses) = operation.get_mut("responses").and_then(Value::as_object_mut) {
                        responses.remove("401");
                    }
                }
            }
        }
    }
    document.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operations(document: &str) -> Vec<(String, Value)> {
        let document: Value = serde_json::from_str(document).expect("JSON");
        let mut found = Vec::new();
        for (path, operations) in document["paths"].as_object().expect("paths") {
            for (method, operation) in operations.as_object().expect("operations") {
                found.push((format!("{method} {path}"), operation.clone()));
            }
        }
        found
    }

    fn keyed_operations(document: &str) -> Vec<String> {
        operations(document)
            .into_iter()
            .filter(|(_, op)| op.get("security") == Some(&serde_json::json!([{ "apiKey": [] }])))
            .map(|(name, op)| {
                assert!(op["responses"].get("401").is_some(), "{name} lists its 401");
                name
            })
            .collect()
    }

    #[test]
    fn without_keys_no_operation_wants_one_or_answers_401() {
        for (name, operation) in operations(&document(false, true)) {
            assert!(operation.get("security").is_none(), "{name}");
            assert!(operation["responses"].get("401").is_none(), "{name}");
        }
    }

    #[test]
    fn with_keys_the_api_wants_one_and_presence_only_when_not_public() {
        let keyed = keyed_operations(&document(true, true));
        assert_eq!(keyed.len(), 6, "{keyed:?}");
        assert!(keyed.iter().all(|name| name.contains("/api/rooms") || name.contains("/api/webhooks")));
        let closed = keyed_operations(&document(true, false));
        assert_eq!(closed.len(), 7, "{closed:?}");
        assert!(closed.contains(&"get /api/presence".to_owned()));
        for public in ["get /healthz", "get /readyz", "get /metrics", "get /api/openapi.json"] {
            assert!(!closed.contains(&public.to_owned()), "{public}");
        }
    }
}
