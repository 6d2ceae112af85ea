//! What the coordinator property tests run on: per node, a view of the shared in-memory backend
//! with that node's own faults (failing writes, writes that land but whose reply is lost, a
//! subscription that breaks and comes back), and clients that record everything sent, in order.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::super::FaultyBackend;
use crate::coordinator::{Clients, Greeted, SocketId};
use crate::count::RoomName;
use crate::presence::{
    BackendError, BackendEvent, Counts, Flush, FlushReply, Member, MemberCount, Page, PresenceBackend,
    RoomCount,
};

/// One node's view of the shared backend, with that node's faults.
pub struct NodeBackend {
    pub shared: Arc<FaultyBackend>,
    /// Writes that fail before reaching the backend.
    pub fail_before: AtomicU32,
    /// Writes that land, then fail (a timeout after the script ran).
    pub lose_reply: AtomicU32,
    /// The subscription is broken: announcements are lost.
    dropping: Arc<AtomicBool>,
    events: Mutex<Option<mpsc::Sender<BackendEvent>>>,
}

impl NodeBackend {
    pub fn new(shared: Arc<FaultyBackend>) -> Self {
        Self {
            shared,
            fail_before: AtomicU32::default(),
            lose_reply: AtomicU32::default(),
            dropping: Arc::default(),
            events: Mutex::default(),
        }
    }

    /// The subscription breaks: announcements are lost until [`NodeBackend::resubscribe`].
    pub fn break_subscription(&self) {
        self.dropping.store(true, Ordering::SeqCst);
        self.send(BackendEvent::Unsubscribed);
    }

    /// The subscription is established again.
    pub fn resubscribe(&self) {
        if self.dropping.swap(false, Ordering::SeqCst) {
            self.send(BackendEvent::Subscribed);
        }
    }

    fn send(&self, event: BackendEvent) {
        if let Some(events) = self.events.lock().expect("lock").as_ref() {
            let _ = events.try_send(event);
        }
    }
}

fn take_one(counter: &AtomicU32) -> bool {
    counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
}

#[async_trait]
impl PresenceBackend for NodeBackend {
    async fn flush(&self, flush: &Flush) -> Result<FlushReply, BackendError> {
        if take_one(&self.fail_before) {
            return Err(BackendError::Pool("injected failure before the write".to_owned()));
        }
        let reply = self.shared.flush(flush).await?;
        if take_one(&self.lose_reply) {
            return Err(BackendError::Timeout(std::time::Duration::from_millis(500)));
        }
        Ok(reply)
    }

    async fn deregister(&self, node: &str, incarnation: u64, groups: &[u16]) -> Result<(), BackendError> {
        self.shared.deregister(node, incarnation, groups).await
    }

    fn subscribe(&self, events: mpsc::Sender<BackendEvent>) {
        let (tx, mut rx) = mpsc::channel(1 << 16);
        self.shared.subscribe(tx);
        *self.events.lock().expect("lock") = Some(events.clone());
        let dropping = self.dropping.clone();
        tokio::spawn(async move {
            while let Some(event) = rx.recv().await {
                if dropping.load(Ordering::SeqCst) && matches!(event, BackendEvent::Announced(_)) {
                    continue;
                }
                if events.send(event).await.is_err() {
                    break;
                }
            }
        });
    }

    async fn room_counts(&self, rooms: &[RoomName]) -> Result<Vec<Counts>, BackendError> {
        self.shared.room_counts(rooms).await
    }

    async fn user_connections(&self, user: &str) -> Result<i64, BackendError> {
        self.shared.user_connections(user).await
    }

    async fn list_rooms(
        &self,
        prefix: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<RoomCount>, BackendError> {
        self.shared.list_rooms(prefix, limit, cursor).await
    }

    async fn members(
        &self,
        room: &RoomName,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<MemberCount>, BackendError> {
        self.shared.members(room, limit, cursor).await
    }

    fn mode(&self) -> &'static str {
        "test"
    }
}

/// Everything one node sent its clients, and the test's own marks, in the order they happened.
#[derive(Debug, Clone)]
pub enum Sent {
    Greet(SocketId, i64),
    Broadcast(i64),
    RoomGreet(SocketId, RoomName, Counts),
    RoomBroadcast(RoomName, Counts),
    Enter(SocketId, RoomName),
    Exit(SocketId, RoomName),
    /// The test sent this socket's connect.
    Connected(SocketId),
    /// The test sent this socket's disconnect.
    Gone(SocketId),
    /// The truth changed: the index of the new truth in the test's list.
    Truth(usize),
}

/// Clients that record what they are sent.
#[derive(Default)]
pub struct LogClients {
    pub log: Mutex<Vec<Sent>>,
}

impl LogClients {
    pub fn push(&self, sent: Sent) {
        self.log.lock().expect("lock").push(sent);
    }

    pub fn entries(&self) -> Vec<Sent> {
        self.log.lock().expect("lock").clone()
    }
}

#[async_trait]
impl Clients for LogClients {
    async fn broadcast(&self, value: i64) {
        self.push(Sent::Broadcast(value));
    }

    fn greet(&self, socket: SocketId, value: i64) -> Greeted {
        self.push(Sent::Greet(socket, value));
        Greeted::Delivered
    }

    async fn broadcast_room(&self, room: &RoomName, counts: Counts) {
        self.push(Sent::RoomBroadcast(room.clone(), counts));
    }

    fn greet_room(&self, socket: SocketId, room: &RoomName, counts: Counts) -> Greeted {
        self.push(Sent::RoomGreet(socket, room.clone(), counts));
        Greeted::Delivered
    }

    fn enter(&self, socket: SocketId, room: &RoomName, _: bool) {
        self.push(Sent::Enter(socket, room.clone()));
    }

    fn exit(&self, socket: SocketId, room: &RoomName) {
        self.push(Sent::Exit(socket, room.clone()));
    }

    async fn member_change(&self, _: &RoomName, _: &Member, _: bool) {}

    fn live(&self) -> Option<HashSet<SocketId>> {
        None
    }

    fn disconnect(&self, _: SocketId) {}
}
