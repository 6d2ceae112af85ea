//! The raw room sequences: a bare session that joins a room at connect and hangs up at once,
//! sends a `join` and hangs up before its ack, floods `join` / `leave` past the rate limit, or
//! names rooms no node may accept. Each ends with the connection closed, so its rooms' true
//! counts are unchanged.

use std::net::IpAddr;
use std::time::Duration;

use super::ops::Op;
use super::raw::Session;
use crate::client;
use crate::messages::Target;
use crate::protocol::{self, Packet, SocketPacket};
use crate::room_wire::{self, AckAnswer};
use crate::rooms::RoomPlan;

/// Events a flood sends back to back: twice the node's default burst (20).
const FLOOD_EVENTS: u32 = 40;
/// How long a flood waits for all its acks (a node answers within a flush or two).
const ACK_WAIT: Duration = Duration::from_secs(3);
/// `join` / `leave` events with names no node may accept (after the ack id).
const INVALID_EVENTS: [&str; 6] = [
    r#"["join",7]"#,
    r#"["join",""]"#,
    r#"["join","a\u0001b"]"#,
    r#"["join",{"room":5}]"#,
    r#"["leave",null]"#,
    r#"["join",{"members":true}]"#,
];

/// Runs one room sequence; the error is a failure kind. Callers bound it in time.
pub async fn run(
    op: Op,
    target: &Target,
    source: Option<IpAddr>,
    plan: &RoomPlan,
    pick: u32,
) -> Result<(), String> {
    let room = plan.name(pick % plan.count.max(1));
    match op {
        Op::RoomConnectHangup => {
            let url = client::with_room(&target.ws_url, &room);
            let mut session = Session::open_url(target, source, &url).await?;
            session.send(&[protocol::CONNECT_MAIN]).await?;
            tokio::task::yield_now().await;
            end(session, pick)
        }
        Op::RoomJoinHangup => {
            let mut session = connected(target, source).await?;
            session.send(&[&room_wire::join_packet(0, &room)]).await?;
            tokio::task::yield_now().await;
            end(session, pick)
        }
        Op::RoomFlood => flood(target, source, plan, pick).await,
        Op::RoomInvalid => invalid(target, source, pick).await,
        other => Err(format!("{other} is not a room sequence")),
    }
}

/// A session whose CONNECT was acknowledged.
async fn connected(target: &Target, source: Option<IpAddr>) -> Result<Session, String> {
    let mut session = Session::open(target, source).await?;
    session.send(&[protocol::CONNECT_MAIN]).await?;
    session.until_ack().await?;
    Ok(session)
}

/// Hangs up with a FIN for an even `pick`, with a reset for an odd one.
fn end(session: Session, pick: u32) -> Result<(), String> {
    if pick.is_multiple_of(2) {
        session.hang_up();
        Ok(())
    } else {
        session.reset()
    }
}

/// `join` / `leave` pairs over the rooms, all in one write; then hang up at once (even `pick`),
/// or read every ack (refusals must be the rate limit's, and there must be some) and leave.
async fn flood(target: &Target, source: Option<IpAddr>, plan: &RoomPlan, pick: u32) -> Result<(), String> {
    let mut session = connected(target, source).await?;
    let packets: Vec<String> = (0..FLOOD_EVENTS)
        .map(|ack| {
            let room = plan.name((pick / 2 + ack / 2) % plan.count.max(1));
            if ack.is_multiple_of(2) {
                room_wire::join_packet(ack, &room)
            } else {
                room_wire::leave_packet(ack, &room)
            }
        })
        .collect();
    let packets: Vec<&str> = packets.iter().map(String::as_str).collect();
    session.send(&packets).await?;
    if pick.is_multiple_of(2) {
        session.hang_up();
        return Ok(());
    }
    let answers = tokio::time::timeout(ACK_WAIT, acks(&mut session, FLOOD_EVENTS as usize)).await;
    let Ok(answers) = answers else {
        // Every event must be answered; leave anyway, so the count must still come back.
        session.leave().await;
        return Err("room_flood_acks_missing".to_owned());
    };
    let mut refused = 0;
    for answer in answers? {
        if let AckAnswer::Refused(reason) = answer {
            match room_wire::refusal_kind(&reason) {
                "refused_rate_limited" => refused += 1,
                kind => return Err(format!("room_flood_{kind}")),
            }
        }
    }
    session.leave().await;
    if refused == 0 {
        return Err("room_flood_not_rate_limited".to_owned());
    }
    Ok(())
}

/// An invalid room in the handshake (must be a CONNECT_ERROR), then invalid names in events
/// (each must be refused as invalid); then hang up.
async fn invalid(target: &Target, source: Option<IpAddr>, pick: u32) -> Result<(), String> {
    let long = "x".repeat(300);
    let bad = match pick % 3 {
        0 => "bad\u{1}room",
        1 => "",
        _ => long.as_str(),
    };
    let url = client::with_room(&target.ws_url, bad);
    let mut session = Session::open_url(target, source, &url).await?;
    session.send(&[protocol::CONNECT_MAIN]).await?;
    match session.until_ack().await {
        Err(kind) if kind == "socketio_connect_error" => session.hang_up(),
        Ok(()) => return Err("room_invalid_accepted_at_connect".to_owned()),
        Err(kind) => return Err(kind),
    }
    let mut session = connected(target, source).await?;
    let packets: Vec<String> =
        INVALID_EVENTS.iter().enumerate().map(|(ack, event)| format!("42{ack}{event}")).collect();
    let packets: Vec<&str> = packets.iter().map(String::as_str).collect();
    session.send(&packets).await?;
    for answer in acks(&mut session, INVALID_EVENTS.len()).await? {
        match answer {
            AckAnswer::Counts { .. } => return Err("room_invalid_accepted".to_owned()),
            AckAnswer::Refused(reason) if room_wire::refusal_kind(&reason) != "refused_invalid" => {
                return Err(format!("room_invalid_{}", room_wire::refusal_kind(&reason)));
            }
            AckAnswer::Refused(_) => {}
        }
    }
    session.hang_up();
    Ok(())
}

/// Reads until `count` acks arrived (answering pings); their answers in arrival order.
async fn acks(session: &mut Session, count: usize) -> Result<Vec<AckAnswer>, String> {
    let mut answers = Vec::with_capacity(count);
    while answers.len() < count {
        let text = client::next_text(&mut session.ws).await?;
        match protocol::parse(&text) {
            Ok(Packet::Message(SocketPacket::Ack { payload, .. })) => {
                answers.push(room_wire::ack_answer(payload)?)
            }
            Ok(Packet::Ping) => session.send(&[protocol::PONG]).await?,
            Ok(Packet::Close | Packet::Message(SocketPacket::Disconnect { .. })) => {
                return Err("closed_early".to_owned());
            }
            _ => {}
        }
    }
    Ok(answers)
}
