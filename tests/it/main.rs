//! The integration tests: one binary, real redis-server, real nodes, real Socket.IO clients.

mod chaos;
mod client_bundle;
mod cluster;
mod config_errors;
mod differential;
mod drift;
mod faults;
mod helpers;
mod hostile;
mod http_routes;
mod netns;
mod prometheus;
mod rooms;
mod standalone;
mod swarm;
mod telemetry;
mod topology;
mod users;
mod webhooks;
