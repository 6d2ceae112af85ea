//! rollcall: a horizontally scalable Socket.IO presence cluster.
//!
//! Map of the crate (see ARCHITECTURE.md for the why):
//! - [`cli`] parses the command line; `main.rs` only calls it.
//! - [`config`] loads the layered settings; [`telemetry`] installs logging.
//! - [`startup`] builds a node ([`startup::App::build`]) and runs it until shutdown.
//! - [`tally`] is the count a node shows, as pure logic; [`coordinator`] is the task that owns
//!   it, batches writes and paces emits.
//! - [`presence`] is the backend trait with its two drivers: in-memory (standalone) and Redis.
//! - [`sockets`] wires socketioxide to the coordinator; [`http`] and [`bundle`] serve the rest;
//!   [`dashboard`] feeds the live cluster page on its own Socket.IO namespace.
//! - [`swarm`] is the load tester (`rollcall swarm`): many lean Socket.IO clients over worker
//!   processes, with a convergence report.
//! - [`metrics`] holds the Prometheus registry; [`shutdown`] the stop signal; [`probe`] a
//!   minimal HTTP GET for health checks.

pub mod bundle;
pub mod cli;
pub mod config;
pub mod coordinator;
pub mod dashboard;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod probe;
pub mod shutdown;
pub mod sockets;
pub mod startup;
pub mod swarm;
pub mod tally;
pub mod telemetry;
