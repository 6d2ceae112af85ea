//! The Lua scripts (in `lua/`) that make every change one atomic Redis step, and the names of
//! every key and channel they use (built from hash tags: see ARCHITECTURE.md).
//!
//! Every script is `prelude.lua` followed by its body, sent with EVALSHA; after a Redis restart
//! (NOSCRIPT) the client loads it again.

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The compiled scripts of one backend (their SHA1s are what EVALSHA sends).
pub struct Scripts {
    /// `lua/flush.lua`: heartbeat, reaping, registration, shares, announcements.
    pub flush: redis::Script,
    /// `lua/deregister.lua`: remove this node and all its shares at shutdown.
    pub deregister: redis::Script,
    /// `lua/list_rooms.lua`: one group's rooms by name, with counts.
    pub list_rooms: redis::Script,
    /// `lua/members.lua`: one page of a room's members.
    pub members: redis::Script,
    /// `lua/lease.lua`: a group's webhook delivery lease.
    pub lease: redis::Script,
}

impl Scripts {
    /// Prepends the prelude to each script body.
    pub fn new() -> Self {
        let with_prelude = |body: &str| redis::Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            flush: with_prelude(include_str!("lua/flush.lua")),
            deregister: with_prelude(include_str!("lua/deregister.lua")),
            list_rooms: with_prelude(include_str!("lua/list_rooms.lua")),
            members: with_prelude(include_str!("lua/members.lua")),
            // Standalone: it needs no clock and no aggregate arithmetic.
            lease: redis::Script::new(include_str!("lua/lease.lua")),
        }
    }
}

/// Key and channel names of one cluster (one `redis_prefix`).
#[derive(Debug, Clone)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Names under `prefix`.
    pub fn new(prefix: &str) -> Self {
        Self { prefix: prefix.to_owned() }
    }

    /// `{prefix}`: the tag of every global key.
    pub fn global_tag(&self) -> String {
        format!("{{{}}}", self.prefix)
    }

    /// `{prefix:g<N>}`: the tag of every key of room group `group`.
    pub fn group_tag(&self, group: u16) -> String {
        format!("{{{}:g{group}}}", self.prefix)
    }

    /// The global count's channel.
    pub fn global_channel(&self) -> String {
        format!("{}:updates", self.global_tag())
    }

    /// A room group's channel.
    pub fn group_channel(&self, group: u16) -> String {
        format!("{}:updates", self.group_tag(group))
    }

    /// One key of the global slot, to route a call there.
    pub fn global_route(&self) -> String {
        format!("{}:agg", self.global_tag())
    }

    /// One key of a group's slot, to route a call there.
    pub fn group_route(&self, group: u16) -> String {
        format!("{}:v", self.group_tag(group))
    }

    /// A group's webhook event stream.
    pub fn events(&self, group: u16) -> String {
        format!("{}:events", self.group_tag(group))
    }

    /// A group's dead-lettered events.
    pub fn dead(&self, group: u16) -> String {
        format!("{}:dead", self.group_tag(group))
    }

    /// A group's webhook delivery lease.
    pub fn lease(&self, group: u16) -> String {
        format!("{}:lease", self.group_tag(group))
    }

    /// A room's aggregate hash (`c`, `u`, `n:<node>`).
    pub fn room_key(&self, group: u16, room: &str) -> String {
        format!("{}:r:{room}", self.group_tag(group))
    }
}
