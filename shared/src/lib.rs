//! Core of the commerce analytics module.
//!
//! Everything with behaviour lives here; the Lambda functions in `functions/` and the local server in
//! `cli/` only wire configuration and clients to these pieces ([`lambda`] is the functions' wiring).
//!
//! Modules, in layers: a module imports only from its own layer or the ones below it, never upwards, and
//! no two modules import each other (`shared/tests/layering.rs` checks both).
//!
//! 1. Ground floor, importing nothing of the crate but each other: [`error`] (the one error enum and the
//!    storage error every port reports), [`ident`] (identifier and code rules), [`clock`], [`retry`]
//!    (bounded jittered backoff), [`ratelimit`] (per-key token buckets), [`telemetry`] (logging set-up).
//! 2. [`config`]: typed configuration, every setting declared once.
//! 3. [`event`]: the event model, validation, enrichment and bot detection; [`demo`] (deterministic
//!    realistic demo traffic, made as typed events for the bulk loader).
//! 4. The domain and its ports (narrow traits the adapters implement): [`auth`] (API keys → store;
//!    `KeyStore`), [`query`] (parameters, the metric catalog, ranked metrics, funnels, cohorts, live,
//!    dashboards; `ReadStore`, `DashboardStore`), [`retention`] (`RetentionStore`), [`erasure`]
//!    (`ErasureStore`), [`alerts`] (rules, guards, their evaluation over the read port and their
//!    notifications; `AlertStore`).
//! 5. [`store`]: the write port (`EventStore`) and the adapters: ClickHouse (all SQL: inserts with
//!    exactly-once, migrations, key table, reads mirroring `query/`, retention and erasure) and in memory.
//! 6. Where events flow: [`sink`] (local buffer → store, Firehose, direct store writes; `EventSink`),
//!    [`ingest`] (the Firehose HTTP endpoint destination).
//! 7. [`tracker`]: the one entry point that validates and sends events (HTTP handlers and server-side
//!    code).
//! 8. [`api`]: HTTP handlers over `lambda_http` types, and the single error → HTTP mapping.
//! 9. [`lambda`]: what every Lambda `main` calls (telemetry, configuration, clients, serving).
//!
//! Beside the layers: [`fuzzing`] (entry points of the fuzz targets).
//!
//! Two time crates, on purpose: `time` for the event model, validation and ClickHouse rows (the
//! `clickhouse` crate serializes `DateTime64` from `time::OffsetDateTime`; RFC 3339 parsing), `jiff` for
//! the read side, which needs the IANA time-zone database and DST-aware calendar arithmetic (bucket
//! starts, day and month steps in a zone) that `time` does not have. They meet only at the read seam, as
//! Unix milliseconds.

pub mod alerts;
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
pub mod fx;
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
