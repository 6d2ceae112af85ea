//! API keys: with `api_keys` set, the API's reads need `Authorization: Bearer <key>`, compared in
//! constant time. A wrong or missing key is a 401 with a JSON error that reveals nothing else.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The configured keys (empty: the API is open).
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<Vec<Vec<u8>>>);

impl ApiKeys {
    /// From the `api_keys` setting.
    pub fn new(keys: impl IntoIterator<Item = String>) -> Self {
        Self(Arc::new(keys.into_iter().filter(|k| !k.is_empty()).map(String::into_bytes).collect()))
    }

    /// Whether any key is configured.
    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// Whether `presented` is one of the keys (each compared in constant time).
    pub fn accepts(&self, presented: &[u8]) -> bool {
        let mut found = subtle::Choice::from(0);
        for key in self.0.iter() {
            found |= key.as_slice().ct_eq(presented);
        }
        bool::from(found)
    }
}

/// Middleware: lets the request through when keys are off or its bearer key is one of them.
pub async fn require(
    State(keys): State<ApiKeys>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    if !keys.enabled() {
        return Ok(next.run(request).await);
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::as_bytes);
    match presented {
        Some(key) if keys.accepts(key) => Ok(next.run(request).await),
        _ => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "an API key is required: Authorization: Bearer <key>".to_owned(),
        )),
    }
}
