//! The rooms API: any room's count, non-empty rooms by prefix, many counts at once. Reads go to
//! the backend (a room need not have members on this node), so they see the cluster's counts.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rollcall_wire::{Member, MembersPage, RoomCount, RoomCounts, RoomsPage, RoomsQuery};
use serde::Deserialize;

use crate::count::RoomName;
use crate::presence::{BackendError, Counts, PresenceBackend};

/// Most rooms in one page or one counts request.
pub const MAX_ROOMS_PER_REQUEST: usize = 1000;
/// Rooms in a page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;

/// A JSON error with its status: `{"error": "..."}`.
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

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn room(name: &str) -> Result<RoomName, ApiError> {
    RoomName::new(name).map_err(|e| bad_request(format!("invalid room: {e}")))
}

fn document(room: &RoomName, counts: Counts) -> RoomCount {
    RoomCount { room: room.to_string(), users: counts.users, connections: counts.connections }
}

/// `GET /api/rooms/{room}`: zeros for an empty or unknown room.
pub async fn one(
    State(backend): State<Arc<dyn PresenceBackend>>,
    Path(name): Path<String>,
) -> Result<Json<RoomCount>, ApiError> {
    let room = room(&name)?;
    let counts = backend.room_counts(std::slice::from_ref(&room)).await?;
    Ok(Json(document(&room, counts.first().copied().unwrap_or_default())))
}

/// Query of `GET /api/rooms`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    prefix: String,
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/rooms?prefix=&limit=&cursor=`: non-empty rooms in name order, bounded pages.
pub async fn list(
    State(backend): State<Arc<dyn PresenceBackend>>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RoomsPage>, ApiError> {
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_ROOMS_PER_REQUEST).contains(&limit) {
        return Err(bad_request(format!("limit must be between 1 and {MAX_ROOMS_PER_REQUEST}")));
    }
    if query.prefix.chars().any(char::is_control) || query.prefix.len() > crate::count::room::MAX_ROOM_BYTES {
        return Err(bad_request("prefix must be at most 256 bytes without control characters"));
    }
    if let Some(cursor) = &query.cursor {
        room(cursor).map_err(|_| bad_request("cursor is not one this API returned"))?;
    }
    let page = backend.list_rooms(&query.prefix, limit, query.cursor.as_deref()).await?;
    let rooms = page.items.iter().map(|r| document(&r.room, r.counts)).collect();
    Ok(Json(RoomsPage { rooms, next: page.next }))
}

/// `POST /api/rooms/counts` with `{"rooms": [...]}`: the counts in the order asked.
pub async fn many(
    State(backend): State<Arc<dyn PresenceBackend>>,
    body: Result<Json<RoomsQuery>, JsonRejection>,
) -> Result<Json<RoomCounts>, ApiError> {
    let Json(query) = body.map_err(|e| bad_request(e.body_text()))?;
    if query.rooms.len() > MAX_ROOMS_PER_REQUEST {
        return Err(bad_request(format!("at most {MAX_ROOMS_PER_REQUEST} rooms per request")));
    }
    let rooms = query
        .rooms
        .iter()
        .enumerate()
        .map(|(i, name)| {
            RoomName::new(name).map_err(|e| bad_request(format!("rooms[{i}]: invalid room: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let counts = if rooms.is_empty() { Vec::new() } else { backend.room_counts(&rooms).await? };
    Ok(Json(RoomCounts {
        rooms: rooms.iter().zip(counts).map(|(room, counts)| document(room, counts)).collect(),
    }))
}

/// Query of `GET /api/rooms/{room}/members`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembersQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /api/rooms/{room}/members?limit=&cursor=`: the room's signed members in user-id order.
pub async fn members(
    State(backend): State<Arc<dyn PresenceBackend>>,
    Path(name): Path<String>,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<MembersPage>, ApiError> {
    let room = room(&name)?;
    let Query(query) = query.map_err(|e| bad_request(e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_ROOMS_PER_REQUEST).contains(&limit) {
        return Err(bad_request(format!("limit must be between 1 and {MAX_ROOMS_PER_REQUEST}")));
    }
    if query.cursor.as_ref().is_some_and(|c| c.is_empty() || c.len() > 256 || c.chars().any(char::is_control))
    {
        return Err(bad_request("cursor is not one this API returned"));
    }
    let page = backend.members(&room, limit, query.cursor.as_deref()).await?;
    let members = page
        .items
        .into_iter()
        .map(|m| Member {
            user: m.user.to_string(),
            info: m.info.as_deref().and_then(|text| serde_json::from_str(text).ok()),
            connections: m.connections,
        })
        .collect();
    Ok(Json(MembersPage { members, next: page.next }))
}
