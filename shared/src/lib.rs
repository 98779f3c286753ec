//! Core of the commerce analytics module.
//!
//! Everything with behaviour lives here; the Lambda functions in `functions/` and the local server in
//! `cli/` only wire configuration and clients to these pieces:
//!
//! - [`event`]: the event model, validation and enrichment;
//! - [`config`]: typed configuration (YAML + environment);
//! - [`auth`]: API keys → store (tenant);
//! - [`sink`]: where accepted events go (local buffer → store, later Firehose), behind [`sink::EventSink`];
//! - [`store`]: storage behind [`store::EventStore`]; ClickHouse today (schema, migrations, inserts);
//! - [`tracker`]: the one entry point that validates and sends events (HTTP handlers and server-side code);
//! - [`api`]: HTTP handlers over `lambda_http` types, and the single error → HTTP mapping;
//! - [`retention`] and [`erasure`]: the scheduled retention job and per-customer erasure;
//! - [`demo`]: deterministic realistic demo traffic.

pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod demo;
pub mod erasure;
pub mod error;
pub mod event;
#[doc(hidden)]
pub mod fuzzing;
pub mod ident;
pub mod ingest;
pub mod lambda;
pub mod query;
pub mod ratelimit;
pub mod retention;
pub mod retry;
pub mod sink;
pub mod store;
pub mod telemetry;
pub mod tracker;

pub use error::{Error, Result};
