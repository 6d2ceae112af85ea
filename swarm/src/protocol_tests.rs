//! The parser on real packets, odd spacing, other namespaces and malformed input.

use super::*;

#[test]
fn open_packet() {
    let text = r#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
    let Ok(Packet::Open(open)) = parse(text) else { panic!("not an open packet") };
    assert_eq!(open.sid, "lv_VI97HAXpY6yYWAAAC");
    assert_eq!(open.ping_interval, 25000);
    assert_eq!(open.ping_timeout, 20000);
    assert_eq!(open.max_payload, Some(1_000_000));
}

#[test]
fn heartbeats_and_close() {
    assert_eq!(parse("2"), Ok(Packet::Ping));
    assert_eq!(parse("3"), Ok(Packet::Pong));
    assert_eq!(parse("1"), Ok(Packet::Close));
    assert_eq!(parse("6"), Ok(Packet::Noop));
}

#[test]
fn socket_connect_and_disconnect() {
    let connect = parse(r#"40{"sid":"wZX3oN0bSVIhsaknAAAI"}"#);
    assert_eq!(connect, Ok(Packet::Message(SocketPacket::Connect { namespace: "/" })));
    let admin = parse(r#"40/admin,{"sid":"x"}"#);
    assert_eq!(admin, Ok(Packet::Message(SocketPacket::Connect { namespace: "/admin" })));
    assert_eq!(parse("41"), Ok(Packet::Message(SocketPacket::Disconnect { namespace: "/" })));
}

#[test]
fn refresh_event_with_integer() {
    let packet = parse(r#"42["refresh users",12]"#).expect("parses");
    assert_eq!(refresh_total(&packet), Some(12));
    let spaced = parse(r#"42[ "refresh users" , 50000 ]"#).expect("parses");
    assert_eq!(refresh_total(&spaced), Some(50000));
    let with_ack = parse(r#"4217["refresh users",3,"extra"]"#).expect("parses");
    assert_eq!(refresh_total(&with_ack), Some(3));
}

#[test]
fn other_events_and_namespaces_carry_no_total() {
    let other = parse(r#"42["chat",5]"#).expect("parses");
    assert_eq!(refresh_total(&other), None);
    let admin = parse(r#"42/admin,["refresh users",5]"#).expect("parses");
    assert_eq!(refresh_total(&admin), None);
    let text_value = parse(r#"42["refresh users","many"]"#).expect("parses");
    assert_eq!(refresh_total(&text_value), None);
}

#[test]
fn binary_is_ignored_and_acks_carry_their_id() {
    let binary = parse(r#"451-["refresh users",{"_placeholder":true,"num":0}]"#);
    assert_eq!(binary, Ok(Packet::Message(SocketPacket::Other)));
    let ack = SocketPacket::Ack { namespace: "/", id: Some(31), payload: "[1]" };
    assert_eq!(parse(r#"4331[1]"#), Ok(Packet::Message(ack)));
    let admin = SocketPacket::Ack { namespace: "/admin", id: Some(2), payload: "[]" };
    assert_eq!(parse(r#"43/admin,2[]"#), Ok(Packet::Message(admin)));
    let no_id = SocketPacket::Ack { namespace: "/", id: None, payload: "[]" };
    assert_eq!(parse(r#"43[]"#), Ok(Packet::Message(no_id)));
    let huge = parse(r#"4399999999999[]"#);
    assert!(matches!(huge, Ok(Packet::Message(SocketPacket::Ack { id: None, .. }))), "{huge:?}");
}

#[test]
fn room_users_events() {
    let fast = parse(r#"42["room users",{"room":"room-3","users":2,"connections":2}]"#).expect("parses");
    let count = room_users(&fast).expect("a room count");
    assert_eq!((count.room.as_ref(), count.connections), ("room-3", 2));
    let slow = parse(r#"42[ "room users" , {"connections":4,"users":4,"room":"a\"b"} ]"#).expect("parses");
    let count = room_users(&slow).expect("a room count, the slow way");
    assert_eq!((count.room.as_ref(), count.users), ("a\"b", 4));
    for other in [
        r#"42["room users",3]"#,
        r#"42/admin,["room users",{"room":"a","users":1,"connections":1}]"#,
        r#"42["refresh users",3]"#,
    ] {
        let packet = parse(other).expect("parses");
        assert_eq!(room_users(&packet), None, "{other}");
    }
    assert_eq!(refresh_total(&fast), None);
}

#[test]
fn connect_error_payload() {
    let error = parse(r#"44{"message":"Not authorized"}"#);
    let expected = SocketPacket::ConnectError(r#"{"message":"Not authorized"}"#);
    assert_eq!(error, Ok(Packet::Message(expected)));
}

#[test]
fn malformed_input_is_an_error() {
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert_eq!(parse("x"), Err(ParseError::UnknownEngineType('x')));
    assert!(matches!(parse("0{not json"), Err(ParseError::BadOpen(_))));
    assert!(matches!(parse("0"), Err(ParseError::BadOpen(_))));
    assert_eq!(parse("4"), Err(ParseError::BadSocketType));
    assert_eq!(parse("49"), Err(ParseError::BadSocketType));
    let broken = parse(r#"42["refresh users",12"#).expect("an event, even if its JSON is cut");
    assert_eq!(refresh_total(&broken), None);
    assert_eq!(parse("4é"), Err(ParseError::BadSocketType));
    assert_eq!(parse("é"), Err(ParseError::UnknownEngineType('é')));
}
