//! The integration tests: one binary, real redis-server, real nodes, real Socket.IO clients.

mod cluster;
mod config_errors;
mod helpers;
mod http_routes;
mod standalone;
