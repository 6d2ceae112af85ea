//! Every error the HTTP API answers is JSON, `{"error": "..."}`, with the status its OpenAPI
//! document (`assets/openapi.json`) gives: our own checks, axum's extractor rejections (which
//! would otherwise answer in plain text) and the router's unknown paths and methods alike.

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::presence::BackendError;

/// A JSON error with its status: `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

impl From<BackendError> for ApiError {
    fn from(error: BackendError) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("the counts cannot be read right now: {error}"))
    }
}

/// 400 with `message`.
pub fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

/// A body that is not a rooms query. Too large (413) and not `application/json` (415) keep
/// their HTTP meaning; a body that does not parse, or parses into something else, is a 400 like
/// any other invalid input (axum would answer 422 for the latter).
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let status = match rejection.status() {
            status @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => status,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError(status, rejection.body_text())
    }
}

/// An unknown, repeated or mistyped query parameter.
impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        bad_request(rejection.body_text())
    }
}

/// A path segment that is not UTF-8 once percent-decoded.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        bad_request(rejection.body_text())
    }
}

/// The router's answer for a path no route has.
pub async fn not_found(uri: Uri) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no such path: {}", uri.path()))
}

/// The router's answer for a method a path does not take (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {}", uri.path()))
}
