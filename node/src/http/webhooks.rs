//! `GET /api/webhooks/dead?limit=`: events delivery gave up on (behind the API key), newest first.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::error::ApiError;
use crate::presence::{DeadEvent, EventLog};

/// What the handler reads.
#[derive(Clone)]
pub struct DeadLetters {
    /// The event logs.
    pub log: Arc<dyn EventLog>,
    /// Room groups.
    pub groups: u16,
}

/// Query of `GET /api/webhooks/dead`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadQuery {
    limit: Option<usize>,
}

/// The dead-letter document.
#[derive(serde::Serialize)]
pub struct DeadPage {
    events: Vec<DeadEvent>,
}

/// `GET /api/webhooks/dead`.
pub async fn dead(
    State(letters): State<DeadLetters>,
    query: Result<Query<DeadQuery>, QueryRejection>,
) -> Result<Json<DeadPage>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError(StatusCode::BAD_REQUEST, "limit must be between 1 and 1000".to_owned()));
    }
    Ok(Json(DeadPage { events: letters.log.dead(letters.groups, limit).await? }))
}
