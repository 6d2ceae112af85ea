//! The rooms API: any room's count, non-empty rooms by prefix, many counts at once. Reads go to
//! the backend (a room need not have members on this node), so they see the cluster's counts.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, RawQuery, State};
use rollcall_wire::{Member, MembersPage, RoomCount, RoomCounts, RoomsPage, RoomsQuery};
use serde::Deserialize;

use super::error::{ApiError, bad_request};
use crate::count::RoomName;
use crate::presence::{Counts, PresenceBackend};

/// Most rooms in one page or one counts request.
pub const MAX_ROOMS_PER_REQUEST: usize = 1000;
/// Rooms in a page when `limit` is not given.
const DEFAULT_PAGE: usize = 100;
/// The room whose name is the last segment of `POST /api/rooms/counts`.
const COUNTS_ROOM: &str = "counts";

fn room(name: &str) -> Result<RoomName, ApiError> {
    RoomName::new(name).map_err(|e| bad_request(format!("invalid room: {e}")))
}

fn document(room: &RoomName, counts: Counts) -> RoomCount {
    RoomCount { room: room.to_string(), users: counts.users, connections: counts.connections }
}

/// `GET /api/rooms/{room}`: zeros for an empty or unknown room.
pub async fn one(
    State(backend): State<Arc<dyn PresenceBackend>>,
    name: Result<Path<String>, PathRejection>,
) -> Result<Json<RoomCount>, ApiError> {
    let Path(name) = name?;
    count_of(backend.as_ref(), &name).await
}

/// `GET /api/rooms/counts`: the room named `counts`. The router matches the literal path of
/// `POST /api/rooms/counts` before `/api/rooms/{room}`, so without this route that one room
/// could not be read (405).
pub async fn one_named_counts(
    State(backend): State<Arc<dyn PresenceBackend>>,
) -> Result<Json<RoomCount>, ApiError> {
    count_of(backend.as_ref(), COUNTS_ROOM).await
}

async fn count_of(backend: &dyn PresenceBackend, name: &str) -> Result<Json<RoomCount>, ApiError> {
    let room = room(name)?;
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
    RawQuery(raw): RawQuery,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<RoomsPage>, ApiError> {
    if !crate::query::is_utf8(raw.as_deref().unwrap_or_default()) {
        return Err(bad_request("the query string is not UTF-8 once percent-decoded"));
    }
    let Query(query) = query?;
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
    let Json(query) = body?;
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
    name: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    query: Result<Query<MembersQuery>, QueryRejection>,
) -> Result<Json<MembersPage>, ApiError> {
    let Path(name) = name?;
    let room = room(&name)?;
    if !crate::query::is_utf8(raw.as_deref().unwrap_or_default()) {
        return Err(bad_request("the query string is not UTF-8 once percent-decoded"));
    }
    let Query(query) = query?;
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
