//! The integration tests: one binary, real redis-server, real nodes, real Socket.IO clients.

mod cluster;
mod config_errors;
mod drift;
mod faults;
mod helpers;
mod hostile;
mod http_routes;
mod standalone;
mod swarm;
mod telemetry;
