//! The Lua scripts (in `lua/`) that make every count change one atomic Redis step, and the one
//! place that declares the order of the keys they receive.
//!
//! Every script is `prelude.lua` followed by its body, sent with EVALSHA; after a Redis restart
//! (NOSCRIPT) the client loads it again.

/// The keys every script receives, in `KEYS[1..]` order (see `lua/prelude.lua`). All carry the
/// hash tag `{prefix}`, so they live in one Redis Cluster slot.
pub const GLOBAL_KEYS: [&str; 5] = ["total", "version", "shares", "nodes", "clock"];

const PRELUDE: &str = include_str!("lua/prelude.lua");

/// The compiled scripts of one backend (their SHA1s are what EVALSHA sends).
pub struct Scripts {
    /// `lua/write_share.lua`: heartbeat, set the share, reap, announce, read the live nodes.
    pub write_share: redis::Script,
    /// `lua/deregister.lua`: remove this node and its share at shutdown.
    pub deregister: redis::Script,
}

impl Scripts {
    /// Prepends the prelude to each script body.
    pub fn new() -> Self {
        let with_prelude = |body: &str| redis::Script::new(&format!("{PRELUDE}\n{body}"));
        Self {
            write_share: with_prelude(include_str!("lua/write_share.lua")),
            deregister: with_prelude(include_str!("lua/deregister.lua")),
        }
    }
}

/// The full key names for a prefix: `{prefix}:total`, ...
pub fn global_keys(prefix: &str) -> [String; 5] {
    GLOBAL_KEYS.map(|name| format!("{{{prefix}}}:{name}"))
}

/// The announcement channel for a prefix.
pub fn updates_channel(prefix: &str) -> String {
    format!("{{{prefix}}}:updates")
}
