//! Wiring of the Lambda functions: every `functions/*/src/main.rs` is one call into this module.
//!
//! Each entry point does the same three things in the same order, once per sandbox (cold start):
//! structured JSON logs ([`crate::telemetry`]), the configuration from the environment (failing fast with
//! the setting named, see [`crate::config`]), and the clients, built without I/O (nothing connects before
//! the first request). Then it serves invocations until the runtime stops. No background work outlives an
//! invocation: the sandbox is frozen between calls.
//!
//! | function | entry | serves |
//! |---|---|---|
//! | `track` | [`track`] | the track routes; events to Firehose when `firehose_stream_name` is set, else to the store |
//! | `ingest` | [`ingest`] | Firehose deliveries to its Function URL ([`crate::ingest`]) |
//! | `metrics`, `funnel`, `erasure` | [`store_routes`] | the store-backed routes: reads, dashboards, erasure (API Gateway routes each path to its function) |
//! | `retention` | [`retention`] | the daily schedule ([`crate::retention`]) |

use std::sync::Arc;

use lambda_http::lambda_runtime::{self, LambdaEvent};
use lambda_http::{Error, Request};
use serde_json::Value;

use crate::api::Api;
use crate::auth::Authenticator;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::event::Validator;
use crate::store::Warehouse;
use crate::tracker::Tracker;

/// What every function starts with: its configuration, the clock and the warehouse's client.
#[derive(Debug)]
struct Wiring {
    config: Config,
    clock: Arc<dyn Clock>,
    warehouse: Warehouse,
}

impl Wiring {
    fn from_env() -> Result<Self, Error> {
        crate::telemetry::init(true);
        let config = Config::from_env()?;
        let warehouse = Warehouse::from_config(&config)?;
        Ok(Self {
            config,
            clock: Arc::new(SystemClock),
            warehouse,
        })
    }

    /// The key check every API function does; keys live in the store even when events go to Firehose
    /// (looked up once per key per TTL).
    fn authenticator(&self) -> Authenticator {
        Authenticator::from_config(self.warehouse.keys(), &self.config)
    }
}

/// `track`: `POST /analytics/event(s)`.
pub async fn track() -> Result<(), Error> {
    let w = Wiring::from_env()?;
    let sink = crate::sink::lambda_sink(&w.config).await;
    let tracker = Tracker::new(Validator::from_config(&w.config), sink, w.clock.clone());
    Api::new(Arc::new(tracker), w.authenticator(), w.config.limits)
        .with_rate_limit(&w.config, w.clock.clone())
        .run_on_lambda()
        .await
}

/// `metrics`, `funnel` and `erasure`: the routes backed by the store.
pub async fn store_routes() -> Result<(), Error> {
    let w = Wiring::from_env()?;
    store_routes_api(&w).run_on_lambda().await
}

/// The API of [`store_routes`] for `config`, clients built here (no I/O).
pub fn store_routes_api_for(config: &Config) -> crate::error::Result<Api> {
    Ok(store_routes_api(&Wiring {
        config: config.clone(),
        clock: Arc::new(SystemClock),
        warehouse: Warehouse::from_config(config)?,
    }))
}

/// Its tracker discards: the track routes live in the `track` function.
fn store_routes_api(w: &Wiring) -> Api {
    let tracker = Tracker::new(
        Validator::from_config(&w.config),
        Arc::new(crate::sink::DiscardSink),
        w.clock.clone(),
    );
    let api = Api::new(Arc::new(tracker), w.authenticator(), w.config.limits)
        .with_rate_limit(&w.config, w.clock.clone())
        .with_read_origins(&w.config.dashboard_origins)
        .with_query_ports(
            w.warehouse.reads(),
            w.warehouse.dashboards(),
            w.warehouse.erasure(),
            w.clock.clone(),
        );
    api.with_alerts(
        w.warehouse.alerts(),
        w.config.alerts_allow_loopback,
        &w.config.public_url,
    )
}

/// `ingest`: the Firehose HTTP endpoint destination. Refuses to start without the access key (its
/// Function URL is public).
pub async fn ingest() -> Result<(), Error> {
    let w = Wiring::from_env()?;
    w.config.require_firehose_access_key()?;
    let ingest = crate::ingest::Ingest::new(w.warehouse.events(), &w.config, w.clock);
    let ingest = &ingest;
    lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
        Ok::<_, Error>(ingest.handle(req).await)
    }))
    .await
}

/// `retention`: the schedule's event (or `{"dryRun": true}`) in, the report out.
/// `rates`: the scheduled load of exchange rates ([`crate::fx::refresh`] from `rates_url`).
pub async fn rates() -> Result<(), Error> {
    let w = Wiring::from_env()?;
    let http = reqwest::Client::new();
    let (store, url) = (w.warehouse.rates(), w.config.rates_url.clone());
    let (http, store, url) = (&http, store.as_ref(), url.as_str());
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: LambdaEvent<Value>| async move {
            let report = crate::fx::refresh(http, url, store).await?;
            tracing::info!(report = %serde_json::to_string(&report).unwrap_or_default(), "rates stored");
            Ok::<_, Error>(report)
        },
    ))
    .await
}

/// `alerts`: run every 5 minutes by an EventBridge schedule; evaluates every store's due rules and
/// guards ([`crate::alerts::run`]). Output: what it did (also logged).
pub async fn alerts() -> Result<(), Error> {
    let w = Wiring::from_env()?;
    let store = w.warehouse.alerts();
    let reads = w.warehouse.reads();
    let sender = crate::alerts::webhook::Sender::new(w.config.alerts_allow_loopback);
    let (store, reads, sender, url, clock) = (
        store.as_ref(),
        reads.as_ref(),
        &sender,
        w.config.public_url.as_str(),
        w.clock.as_ref(),
    );
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: LambdaEvent<Value>| async move {
            let runner = crate::alerts::run::Runner::new(reads, store, sender.clone(), url);
            let report = runner.run_all(crate::clock::now_jiff(clock)).await?;
            Ok::<_, Error>(report)
        },
    ))
    .await
}

pub async fn retention() -> Result<(), Error> {
    let w = Wiring::from_env()?;
    let policy = crate::retention::Policy::from_config(&w.config);
    let retained = w.warehouse.retention();
    let (store, policy, clock) = (retained.as_ref(), &policy, w.clock.as_ref());
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<Value>| async move {
            Ok::<_, Error>(crate::retention::handle(store, policy, clock, &event.payload).await?)
        },
    ))
    .await
}
