//! rollcall-node: one node of a rollcall presence cluster (`rollcall serve`).
//!
//! Map of the crate (see ARCHITECTURE.md for the why):
//! - [`config`] loads the layered settings; [`telemetry`] installs logging.
//! - [`startup`] builds a node ([`startup::App::build`]) and runs it until shutdown.
//! - [`tally`] is the count a node shows, as pure logic; [`coordinator`] is the task that owns
//!   it, batches writes and paces emits.
//! - [`presence`] is the backend trait with its two drivers: in-memory (standalone) and Redis.
//! - [`sockets`] wires socketioxide to the coordinator; [`http`] and [`bundle`] serve the rest;
//!   [`dashboard`] feeds the live cluster page on its own Socket.IO namespace; [`widget`] serves
//!   the drop-in counter other sites embed with one tag.
//! - [`metrics`] holds the Prometheus registry; [`shutdown`] the stop signal; [`probe`] a
//!   minimal HTTP GET for health checks.

pub mod auth;
pub mod backoff;
pub mod bundle;
pub mod config;
pub mod coordinator;
pub mod count;
pub mod dashboard;
pub mod http;
pub mod metrics;
pub mod presence;
pub mod probe;
pub mod query;
pub mod readmodel;
pub mod shutdown;
pub mod sockets;
pub mod startup;
pub mod widget;

pub mod telemetry;
pub mod webhooks;
