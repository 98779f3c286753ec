//! HTTP API over `lambda_http` request/response types, so the Lambda functions and the local server run
//! the very same handlers.
//!
//! Routes (all under `/analytics`):
//! - `POST /analytics/event`: one event → 202 `{ "id" }`.
//! - `POST /analytics/events`: `{ "events": [...] }` (or a bare array), at most 500 events → 202
//!   `{ "accepted": [{index, id}], "rejected": [{index, error}] }`; 400 with the same report when no event
//!   is valid; 413 beyond the limits.
//! - `POST /analytics/ingest/firehose`: the Firehose HTTP endpoint destination ([`crate::ingest`]),
//!   mounted when configured (the local server; on AWS it is its own function behind a Function URL).
//! - Read key, mounted when the storage ports are configured ([`Api::with_queries`]):
//!   `GET /analytics/metrics?metric=…` (time series and ranked metrics, [`crate::query::metrics`],
//!   [`crate::query::ranked`]), `GET /analytics/funnel?steps=…` ([`crate::query::funnel`]),
//!   `GET /analytics/cohorts` ([`crate::query::cohorts`]), `GET /analytics/live` (events of the last
//!   minutes, [`crate::query::live`]), `GET|POST /analytics/dashboards` and
//!   `GET|PUT|DELETE /analytics/dashboards/{id}` (built-in and custom dashboards,
//!   [`crate::query::dashboards`]), `DELETE /analytics/customers/{customerId}` (erase a customer,
//!   [`crate::erasure`]). Metrics, funnels and cohorts answer CSV on `format=csv` or `Accept: text/csv`
//!   ([`export`]).
//! - `GET /dashboard`: the dashboard page ([`web`]; no auth: the page asks for a read key).
//! - `GET /analytics/openapi.json`: the API contract ([`openapi`]).
//! - `GET /health`: liveness (no auth).
//!
//! Authentication: `Authorization: Bearer <key>`; the key decides the store, and a per-key rate limit
//! applies ([`crate::ratelimit`]). Errors use the shape of [`response::error`].
//!
//! CORS, per route ([`Cors`]): browsers may call the track routes from any origin at the preflight (it
//! carries no key), then the write key's own `origins` decide (403 otherwise, without CORS headers);
//! the read routes answer cross-origin only to `dashboard_origins` (the built-in page is same-origin);
//! every other route never. A preflight allows only the route's own methods.

pub mod export;
pub mod openapi;
pub mod request;
pub mod response;
pub mod web;

use std::sync::Arc;

use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use self::export::Format;
use crate::auth::{Authenticator, Scope};
use crate::clock::Clock;
use crate::config::Limits;
use crate::erasure::{self, ErasureStore};
use crate::error::{Error, Result};
use crate::ingest::Ingest;
use crate::query::dashboards::DashboardStore;
use crate::query::{
    ReadStore, cohorts, dashboards, deadline, funnel, live, metrics, products, ranked,
};
use crate::tracker::Tracker;

pub use request::PeerAddr;

/// The storage ports behind the store-backed routes, and the clock that says "now" for them.
#[derive(Debug, Clone)]
struct Stores {
    reads: Arc<dyn ReadStore>,
    dashboards: Arc<dyn DashboardStore>,
    erasure: Arc<dyn ErasureStore>,
    clock: Arc<dyn Clock>,
    /// The main currency each store's last read found ([`crate::query::currency`]).
    currencies: Arc<crate::query::currency::Guesses>,
}

/// A read request after its key was checked: the caller's store, the ports and "now".
struct Reader<'a> {
    store_id: String,
    stores: &'a Stores,
    now: jiff::Timestamp,
}

impl Reader<'_> {
    fn reads(&self) -> &dyn ReadStore {
        self.stores.reads.as_ref()
    }

    /// `respond` to `query`; when the read `needed` the store's main currency, in the one its last read
    /// found while the lookup confirms it ([`crate::query::currency`]).
    async fn in_main_currency<F, Fut>(
        &self,
        needed: Option<crate::query::currency::Needed>,
        query: &str,
        respond: F,
    ) -> Result<Response<Body>>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<Response<Body>>>,
    {
        match needed {
            Some(needed) => {
                self.stores
                    .currencies
                    .answer(self.reads(), &needed, self.now, |currency| {
                        respond(crate::query::currency::with_currency(query, &currency))
                    })
                    .await
            }
            None => respond(query.to_owned()).await,
        }
    }
}

/// The request's query string ("" without one).
fn query_of(req: &Request) -> &str {
    req.uri().query().unwrap_or("")
}

/// A response body as JSON.
fn to_json(body: &impl serde::Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(body).map_err(|e| Error::Internal(e.to_string()))
}

#[derive(Debug, Clone)]
pub struct Api {
    tracker: Arc<Tracker>,
    keys: Arc<Authenticator>,
    limits: Limits,
    ingest: Option<Arc<Ingest>>,
    stores: Option<Stores>,
    limiter: Option<Arc<crate::ratelimit::RateLimiter>>,
    /// Origins that may call the read routes cross-origin.
    read_origins: Arc<[String]>,
    /// `/analytics/alerts` ([`crate::alerts`]), when the warehouse keeps alerts.
    alerts: Option<AlertsRoute>,
}

/// What the alert routes need beside the query ports.
#[derive(Debug, Clone)]
struct AlertsRoute {
    store: Arc<dyn crate::alerts::AlertStore>,
    allow_loopback: bool,
    public_url: String,
}

/// Who may call a route from a browser on another origin, and with which methods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cors {
    /// The track routes: any origin at the preflight; the write key's origins at the request.
    Track(&'static str),
    /// The read routes: `dashboard_origins` only.
    Read(&'static str),
    /// Everything else: never.
    None,
}

impl Cors {
    fn of(path: &str) -> Self {
        let path = path.trim_end_matches('/');
        match path {
            "/analytics/event" | "/analytics/events" => Self::Track("POST, OPTIONS"),
            "/analytics/metrics" | "/analytics/funnel" | "/analytics/cohorts"
            | "/analytics/live" => Self::Read("GET, OPTIONS"),
            "/analytics/dashboards" => Self::Read("GET, POST, OPTIONS"),
            p if p.starts_with("/analytics/dashboards/") => Self::Read("GET, PUT, DELETE, OPTIONS"),
            p if p.starts_with("/analytics/customers/") => Self::Read("DELETE, OPTIONS"),
            "/analytics/alerts" => Self::Read("GET, POST, OPTIONS"),
            p if p.starts_with("/analytics/alerts/") => {
                Self::Read("GET, POST, PUT, DELETE, OPTIONS")
            }
            _ => Self::None,
        }
    }
}

impl Api {
    pub fn new(tracker: Arc<Tracker>, keys: impl Into<Authenticator>, limits: Limits) -> Self {
        Self {
            tracker,
            keys: Arc::new(keys.into()),
            limits,
            ingest: None,
            stores: None,
            limiter: None,
            read_origins: Arc::from(Vec::new()),
            alerts: None,
        }
    }

    /// Limits each key to `config.rate_limit_per_second` (bursts of `rate_limit_burst`) in this process;
    /// see [`crate::ratelimit`].
    pub fn with_rate_limit(
        mut self,
        config: &crate::config::Config,
        clock: Arc<dyn Clock>,
    ) -> Self {
        self.limiter = crate::ratelimit::RateLimiter::new(
            config.rate_limit_per_second,
            config.rate_limit_burst,
            clock,
        )
        .map(Arc::new);
        self
    }

    /// The caller's principal from `Authorization`, after its key's rate limit.
    async fn authenticate(&self, req: &Request) -> Result<crate::auth::Principal> {
        let client = request::client_ip(req).map(|ip| ip.to_string());
        let principal = self
            .keys
            .authenticate_from(request::authorization(req), client.as_deref())
            .await?;
        principal.check_origin(req.headers().get("origin").and_then(|v| v.to_str().ok()))?;
        if let Some(limiter) = &self.limiter
            && let Err(retry_after) = limiter.check(&principal.key_id)
        {
            tracing::warn!(key = %principal.key_id, store = %principal.store_id, "rate limited");
            return Err(Error::RateLimited {
                per_second: limiter.per_second(),
                retry_after,
            });
        }
        Ok(principal)
    }

    /// Also serve the store-backed routes (reads, custom dashboards, erasure) from `store`.
    pub fn with_queries<S>(self, store: Arc<S>, clock: Arc<dyn Clock>) -> Self
    where
        S: ReadStore + DashboardStore + ErasureStore + 'static,
    {
        self.with_query_ports(store.clone(), store.clone(), store, clock)
    }

    /// [`Self::with_queries`] with each port given on its own (e.g. from a `store::Warehouse`).
    pub fn with_query_ports(
        mut self,
        reads: Arc<dyn ReadStore>,
        dashboards: Arc<dyn DashboardStore>,
        erasure: Arc<dyn ErasureStore>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        self.stores = Some(Stores {
            // Each store takes turns for its reads, so one store's load never slows another's.
            reads: Arc::new(crate::query::fair::FairReads::new(
                reads,
                self.limits.reads_per_store,
            )),
            dashboards,
            erasure,
            clock,
            currencies: Arc::new(crate::query::currency::Guesses::new()),
        });
        self
    }

    /// Also serve `/analytics/alerts` from `store` (webhooks to loopback only when `allow_loopback`;
    /// notification links to `public_url`).
    pub fn with_alerts(
        mut self,
        store: Arc<dyn crate::alerts::AlertStore>,
        allow_loopback: bool,
        public_url: &str,
    ) -> Self {
        self.alerts = Some(AlertsRoute {
            store,
            allow_loopback,
            public_url: public_url.to_owned(),
        });
        self
    }

    /// Let these origins call the read routes cross-origin (`dashboard_origins`).
    pub fn with_read_origins(mut self, origins: &[String]) -> Self {
        self.read_origins = Arc::from(origins.to_vec());
        self
    }

    /// Also serve the Firehose destination at `/analytics/ingest/firehose`.
    pub fn with_ingest(mut self, ingest: Arc<Ingest>) -> Self {
        self.ingest = Some(ingest);
        self
    }

    /// Serves this API on the Lambda runtime (API Gateway HTTP API or Function URL events) until the
    /// runtime stops. Every function binary ends with this.
    pub async fn run_on_lambda(self) -> std::result::Result<(), lambda_http::Error> {
        let api = &self;
        lambda_http::run(lambda_http::service_fn(move |req: Request| async move {
            Ok::<_, lambda_http::Error>(api.handle(req).await)
        }))
        .await
    }

    pub fn tracker(&self) -> &Arc<Tracker> {
        &self.tracker
    }

    /// Handles any request; never fails (errors become JSON error responses).
    pub async fn handle(&self, req: Request) -> Response<Body> {
        let origin = req
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let cors = Cors::of(req.uri().path());
        if req.method() == Method::OPTIONS {
            return self.preflight(cors, origin.as_deref());
        }
        // On Lambda, the request's reads share the invocation's remaining time (see `query::deadline`).
        let deadline = req.lambda_context_ref().and_then(|ctx| {
            deadline::of_lambda(
                ctx.deadline,
                std::time::SystemTime::now(),
                tokio::time::Instant::now(),
            )
        });
        let mut resp = match deadline::within(deadline, self.route(req)).await {
            Ok(r) => r,
            Err(e) => {
                if e.status() >= 500 {
                    tracing::error!(error = %e, code = e.code(), "request failed");
                }
                response::error(&e)
            }
        };
        if let Some(origin) = origin {
            let allowed = match cors {
                // A 403 here is the key's origin check refusing this origin.
                Cors::Track(_) => resp.status() != StatusCode::FORBIDDEN,
                Cors::Read(_) => self.read_origins.contains(&origin),
                Cors::None => false,
            };
            if allowed {
                response::add_cors(&mut resp, &origin);
            }
        }
        resp
    }

    /// A CORS preflight: the route's methods, and the origin when it may call the route.
    fn preflight(&self, cors: Cors, origin: Option<&str>) -> Response<Body> {
        let (methods, allowed) = match cors {
            Cors::Track(m) => (m, true),
            Cors::Read(m) => (
                m,
                origin.is_some_and(|o| self.read_origins.iter().any(|r| r == o)),
            ),
            Cors::None => ("OPTIONS", false),
        };
        let mut resp = response::preflight(methods);
        if let Some(origin) = origin.filter(|_| allowed) {
            response::add_cors(&mut resp, origin);
        }
        resp
    }

    async fn route(&self, req: Request) -> Result<Response<Body>> {
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let method = req.method().clone();
        match (path.as_str(), &method) {
            (p, &Method::GET) if p == "/dashboard" || p.starts_with("/dashboard/") => {
                web::asset(req.uri().path()).ok_or_else(|| Error::NotFound {
                    method: method.to_string(),
                    path: path.clone(),
                })
            }
            ("/analytics/openapi.json", &Method::GET) => {
                Ok(response::json(StatusCode::OK, openapi::document()))
            }
            ("/health", &Method::GET) => {
                Ok(response::json(StatusCode::OK, &json!({"status": "ok"})))
            }
            ("/analytics/event", &Method::POST) => self.track_one(req).await,
            ("/analytics/events", &Method::POST) => self.track_batch(req).await,
            ("/analytics/metrics", &Method::GET) => self.metrics(req).await,
            ("/analytics/funnel", &Method::GET) => self.funnel(req).await,
            ("/analytics/cohorts", &Method::GET) => self.cohorts(req).await,
            ("/analytics/live", &Method::GET) => self.live(req).await,
            ("/analytics/dashboards", _) => self.dashboards(req, None).await,
            (p, _) if p.starts_with("/analytics/dashboards/") => {
                let id = p.trim_start_matches("/analytics/dashboards/").to_owned();
                self.dashboards(req, Some(id)).await
            }
            ("/analytics/alerts", _) => self.alerts(req, None).await,
            (p, _) if p.starts_with("/analytics/alerts/") => {
                let rest = p.trim_start_matches("/analytics/alerts/").to_owned();
                self.alerts(req, Some(rest)).await
            }
            (p, &Method::DELETE) if p.starts_with("/analytics/customers/") => {
                let id = p.trim_start_matches("/analytics/customers/").to_owned();
                self.erase_customer(&req, &id).await
            }
            ("/analytics/ingest/firehose", _) => match &self.ingest {
                Some(ingest) => Ok(ingest.handle(req).await),
                None => Err(Error::NotFound {
                    method: method.to_string(),
                    path,
                }),
            },
            (
                "/analytics/event" | "/analytics/events" | "/analytics/metrics"
                | "/analytics/funnel" | "/health",
                _,
            ) => Err(Error::MethodNotAllowed {
                method: method.to_string(),
                path,
            }),
            _ => Err(Error::NotFound {
                method: method.to_string(),
                path,
            }),
        }
    }

    /// The caller's store, the storage ports and "now" for a store-backed request, after checking that the
    /// key has `scope`.
    async fn reader(&self, req: &Request, scope: Scope) -> Result<Reader<'_>> {
        let principal = self.authenticate(req).await?;
        principal.require(scope)?;
        let stores = self.stores.as_ref().ok_or_else(|| Error::NotFound {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
        })?;
        let ms = i64::try_from(stores.clock.now().unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let now =
            jiff::Timestamp::from_millisecond(ms).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(Reader {
            store_id: principal.store_id,
            stores,
            now,
        })
    }

    async fn metrics(&self, req: Request) -> Result<Response<Body>> {
        let r = self.reader(&req, Scope::Read).await?;
        let (format, query) = export::requested(&req)?;
        let r = &r;
        let respond = move |query: String| async move {
            // Every answer but a time series is rows (CSV: one line per row).
            let rows = match metrics::parse(r.reads(), &r.store_id, &query, r.now).await? {
                metrics::Request::Series(q) => {
                    let answer = metrics::run(r.reads(), &q).await?;
                    return match format {
                        Format::Csv => export::series(&answer),
                        Format::Json => Ok(response::json(StatusCode::OK, &to_json(&answer)?)),
                    };
                }
                metrics::Request::Products(q) => products::run(r.reads(), &q).await?,
                metrics::Request::Attribution(q) => {
                    crate::query::attribution::run(r.reads(), &q).await?
                }
                metrics::Request::Sales(q) => crate::query::sales::run(r.reads(), &q).await?,
                metrics::Request::Ranked(q) => ranked::run(r.reads(), &q).await?,
            };
            match format {
                Format::Csv => export::ranked(&rows),
                Format::Json => Ok(response::json(StatusCode::OK, &rows)),
            }
        };
        r.in_main_currency(
            metrics::main_currency_needed(&r.store_id, &query),
            &query,
            respond,
        )
        .await
    }

    async fn cohorts(&self, req: Request) -> Result<Response<Body>> {
        let r = self.reader(&req, Scope::Read).await?;
        let (format, query) = export::requested(&req)?;
        let r = &r;
        let respond = move |query: String| async move {
            let q = cohorts::parse(r.reads(), &r.store_id, &query, r.now).await?;
            let body = cohorts::run(r.reads(), &q).await?;
            match format {
                Format::Csv => export::cohorts(&body),
                Format::Json => Ok(response::json(StatusCode::OK, &body)),
            }
        };
        r.in_main_currency(
            cohorts::main_currency_needed(&r.store_id, &query),
            &query,
            respond,
        )
        .await
    }

    async fn live(&self, req: Request) -> Result<Response<Body>> {
        let r = self.reader(&req, Scope::Read).await?;
        let q = live::parse(&r.store_id, query_of(&req), r.now)?;
        let body = live::run(r.reads(), &q).await?;
        Ok(response::json(StatusCode::OK, &body))
    }

    async fn funnel(&self, req: Request) -> Result<Response<Body>> {
        let r = self.reader(&req, Scope::Read).await?;
        let (format, query) = export::requested(&req)?;
        let q = funnel::parse(&r.store_id, &query, r.now)?;
        let body = funnel::run(r.reads(), &q).await?;
        match format {
            Format::Csv => export::funnel(&body),
            Format::Json => Ok(response::json(StatusCode::OK, &body)),
        }
    }

    /// `GET /analytics/dashboards` (list), `POST` (create); `GET /analytics/dashboards/{id}` (every widget's
    /// data), `PUT` (replace), `DELETE`. Built-in dashboards are read-only.
    async fn dashboards(&self, req: Request, id: Option<String>) -> Result<Response<Body>> {
        let scope = if req.method() == Method::GET {
            Scope::Read
        } else {
            Scope::Manage
        };
        let r = &self.reader(&req, scope).await?;
        let req = &req;
        let store = r.stores.dashboards.as_ref();
        let method = req.method().clone();
        let not_found = || Error::NotFound {
            method: method.to_string(),
            path: req.uri().path().to_owned(),
        };
        let find = |id: &str, custom: Vec<dashboards::Dashboard>| {
            dashboards::built_in()
                .into_iter()
                .chain(custom)
                .find(|d| d.id == id)
                .ok_or_else(not_found)
        };
        // Checks the body, saves it as dashboard `id` and answers it with `status`.
        let save = |id: String, status: StatusCode| async move {
            let body = request::body_text(req, self.limits.max_body_bytes)?;
            let input: dashboards::DashboardInput = serde_json::from_str(body).map_err(|e| {
                Error::invalid(
                    "invalid_json",
                    "body",
                    format!("body must be {{\"name\", \"widgets\": [...]}}: {e}"),
                )
            })?;
            dashboards::validate(r.reads(), &r.store_id, &input, r.now).await?;
            let d = dashboards::Dashboard {
                id,
                name: input.name.trim().to_owned(),
                built_in: false,
                widgets: input.widgets,
            };
            store.save_dashboard(&r.store_id, &d, r.now).await?;
            Ok::<_, Error>(response::json(status, &d))
        };
        match (id, &method) {
            (None, &Method::GET) => {
                let mut all = dashboards::built_in();
                all.extend(store.dashboards(&r.store_id).await?);
                Ok(response::json(
                    StatusCode::OK,
                    &json!({ "dashboards": all }),
                ))
            }
            (None, &Method::POST) => {
                if store.dashboards(&r.store_id).await?.len() >= dashboards::MAX_DASHBOARDS {
                    return Err(Error::invalid(
                        "too_many_dashboards",
                        "dashboards",
                        format!(
                            "a store has at most {} custom dashboards; delete one first",
                            dashboards::MAX_DASHBOARDS
                        ),
                    ));
                }
                save(format!("dash_{}", ulid::Ulid::new()), StatusCode::CREATED).await
            }
            (Some(id), &Method::GET) => {
                let d = find(&id, store.dashboards(&r.store_id).await?)?;
                let data = dashboards::render(
                    r.reads(),
                    &r.stores.currencies,
                    &r.store_id,
                    &d,
                    query_of(req),
                    r.now,
                )
                .await?;
                Ok(response::json(StatusCode::OK, &data))
            }
            (Some(id), &Method::PUT | &Method::DELETE)
                if dashboards::BUILT_IN.contains(&id.as_str()) =>
            {
                Err(Error::invalid(
                    "read_only_dashboard",
                    "id",
                    format!("{id} is a built-in dashboard and cannot be changed"),
                ))
            }
            (Some(id), &Method::PUT) => {
                find(&id, store.dashboards(&r.store_id).await?)?;
                save(id, StatusCode::OK).await
            }
            (Some(id), &Method::DELETE) => {
                if store.delete_dashboard(&r.store_id, &id, r.now).await? {
                    Ok(response::json(
                        StatusCode::OK,
                        &json!({ "id": id, "deleted": true }),
                    ))
                } else {
                    Err(not_found())
                }
            }
            _ => Err(Error::MethodNotAllowed {
                method: method.to_string(),
                path: req.uri().path().to_owned(),
            }),
        }
    }

    /// `/analytics/alerts[/{id}[/history|/test]]`: see [`crate::alerts`]; keys with the `manage` scope.
    async fn alerts(&self, req: Request, rest: Option<String>) -> Result<Response<Body>> {
        use crate::alerts::{self, Guard, GuardSettings, RuleBody, RuleInput, StoredRule};
        let r = &self.reader(&req, Scope::Manage).await?;
        let method = req.method().clone();
        let not_found = || Error::NotFound {
            method: method.to_string(),
            path: req.uri().path().to_owned(),
        };
        let route = self.alerts.as_ref().ok_or_else(not_found)?;
        let store = route.store.as_ref();
        let all = async || {
            Ok::<_, Error>(alerts::run::with_guards(
                store.alert_rules(&r.store_id).await?,
            ))
        };
        let find = async |id: &str| {
            all()
                .await?
                .into_iter()
                .find(|x| x.id == id)
                .ok_or_else(not_found)
        };
        let body = || request::body_text(&req, self.limits.max_body_bytes);
        let json_body = |what: &str| {
            let text = body()?;
            Ok::<_, Error>((text, what.to_owned()))
        };
        // A custom rule's body, checked (its metric through the metrics parser, its webhooks for SSRF).
        let checked_input = async || {
            let (text, _) = json_body("rule")?;
            let input: RuleInput = serde_json::from_str(text).map_err(|e| {
                Error::invalid(
                    "invalid_json",
                    "body",
                    format!("body must be a rule {{\"name\", \"metric\", \"condition\", …}}: {e}"),
                )
            })?;
            alerts::check(r.reads(), &r.store_id, &input, r.now).await?;
            check_channels(&input.channels, route.allow_loopback).await?;
            Ok::<_, Error>(input)
        };
        let (id, action) = match rest.as_deref() {
            None => (None, None),
            Some(rest) => match rest.split_once('/') {
                Some((id, action)) => (Some(id.to_owned()), Some(action.to_owned())),
                None => (Some(rest.to_owned()), None),
            },
        };
        let answer = |status: StatusCode, v: &serde_json::Value| Ok(response::json(status, v));
        match (id, action.as_deref(), &method) {
            (None, None, &Method::GET) => {
                let rules: Vec<_> = all().await?.iter().map(StoredRule::to_json).collect();
                answer(StatusCode::OK, &json!({ "alerts": rules }))
            }
            (None, None, &Method::POST) => {
                let input = checked_input().await?;
                let custom = store
                    .alert_rules(&r.store_id)
                    .await?
                    .into_iter()
                    .filter(|x| matches!(x.body, RuleBody::Custom(_)))
                    .count();
                if custom >= alerts::MAX_RULES {
                    return Err(Error::invalid(
                        "too_many_alerts",
                        "alerts",
                        format!(
                            "a store has at most {} alert rules; delete one first",
                            alerts::MAX_RULES
                        ),
                    ));
                }
                let rule = StoredRule {
                    id: format!("alert_{}", ulid::Ulid::new()),
                    body: RuleBody::Custom(input),
                    signing_secret: alerts::new_signing_secret(),
                };
                store.save_alert_rule(&r.store_id, &rule, r.now).await?;
                answer(StatusCode::CREATED, &rule.to_json())
            }
            (Some(id), None, &Method::GET) => answer(StatusCode::OK, &find(&id).await?.to_json()),
            (Some(id), None, &Method::PUT) => {
                let old = find(&id).await?;
                let secret = if old.signing_secret.is_empty() {
                    alerts::new_signing_secret()
                } else {
                    old.signing_secret
                };
                let body = match Guard::parse(&id) {
                    Some(g) => {
                        let settings: GuardSettings =
                            serde_json::from_str(body()?).map_err(|e| {
                                Error::invalid(
                                    "invalid_json",
                                    "body",
                                    format!(
                                        "a built-in guard takes {{\"channels\": [...], \"muted\": bool}}: {e}"
                                    ),
                                )
                            })?;
                        check_channels(&settings.channels, route.allow_loopback).await?;
                        RuleBody::Guard(g, settings)
                    }
                    None => RuleBody::Custom(checked_input().await?),
                };
                let rule = StoredRule {
                    id,
                    body,
                    signing_secret: secret,
                };
                store.save_alert_rule(&r.store_id, &rule, r.now).await?;
                answer(StatusCode::OK, &rule.to_json())
            }
            (Some(id), None, &Method::DELETE) => {
                if Guard::parse(&id).is_some() {
                    return Err(Error::invalid(
                        "built_in_guard",
                        "id",
                        format!(
                            "{id} is a built-in guard: mute it instead (PUT {{\"muted\": true}})"
                        ),
                    ));
                }
                find(&id).await?;
                store.delete_alert_rule(&r.store_id, &id, r.now).await?;
                answer(StatusCode::OK, &json!({ "id": id, "deleted": true }))
            }
            (Some(id), Some("history"), &Method::GET) => {
                find(&id).await?;
                let p = crate::query::params::Params::parse(query_of(&req), &["limit"])?;
                let limit = crate::query::ranked::parse_limit(p.get("limit").or(Some("100")))?;
                let history = store.alert_history(&r.store_id, &id, limit).await?;
                answer(
                    StatusCode::OK,
                    &json!({ "id": id, "evaluations": history.evaluations, "deliveries": history.deliveries }),
                )
            }
            (Some(id), Some("test"), &Method::POST) => {
                let rule = find(&id).await?;
                if rule.channels().is_empty() {
                    return Err(Error::invalid(
                        "no_channels",
                        "channels",
                        format!("{id} has no channels to send a test notification to"),
                    ));
                }
                // One attempt, 5 seconds at most: the caller waits for the answer.
                let mut sender = alerts::webhook::Sender::new(route.allow_loopback);
                sender.attempts = 1;
                sender.timeout = std::time::Duration::from_secs(5);
                let runner = alerts::run::Runner::new(r.reads(), store, sender, &route.public_url);
                let deliveries = runner.test(&r.store_id, &rule, r.now).await?;
                answer(
                    StatusCode::OK,
                    &json!({ "id": id, "deliveries": deliveries }),
                )
            }
            (Some(_), Some(_), _) | (Some(_), None, _) | (None, _, _) => {
                Err(Error::MethodNotAllowed {
                    method: method.to_string(),
                    path: req.uri().path().to_owned(),
                })
            }
        }
    }

    /// `DELETE /analytics/customers/{customerId}`: see [`crate::erasure`].
    async fn erase_customer(&self, req: &Request, raw_id: &str) -> Result<Response<Body>> {
        let r = self.reader(req, Scope::Erase).await?;
        let decoded = percent_encoding::percent_decode_str(raw_id)
            .decode_utf8()
            .map_err(|_| {
                Error::invalid(
                    "invalid_customer_id",
                    "customerId",
                    "customerId must be UTF-8 (percent-encoded in the path)",
                )
            })?;
        let id = erasure::parse_customer_id(&decoded, self.limits.max_id_len)?;
        let report = r.stores.erasure.erase_customer(&r.store_id, &id).await?;
        tracing::info!(
            store = %r.store_id,
            events = report.events_deleted,
            rejects = report.rejects_deleted,
            "customer erased"
        );
        Ok(response::json(StatusCode::OK, &report))
    }

    async fn track_one(&self, req: Request) -> Result<Response<Body>> {
        let principal = self.authenticate(&req).await?;
        principal.require(Scope::Track)?;
        let body = request::body_text(&req, self.limits.max_body_bytes)?;
        let meta = request::meta(&req);
        let id = self
            .tracker
            .track_json(&principal.store_id, body, &meta)
            .await?;
        Ok(response::json(StatusCode::ACCEPTED, &json!({ "id": id })))
    }

    async fn track_batch(&self, req: Request) -> Result<Response<Body>> {
        let principal = self.authenticate(&req).await?;
        principal.require(Scope::Track)?;
        let body = request::body_text(&req, self.limits.max_body_bytes)?;
        let events = parse_batch(body)?;
        if events.is_empty() {
            return Err(Error::invalid(
                "empty_batch",
                "events",
                "events must hold at least one event",
            ));
        }
        if events.len() > self.limits.max_batch_events {
            return Err(Error::TooLarge {
                message: format!(
                    "{} events in one batch; the limit is {}",
                    events.len(),
                    self.limits.max_batch_events
                ),
                field: "events".into(),
            });
        }
        let meta = request::meta(&req);
        let report = self
            .tracker
            .track_many(&principal.store_id, &events, &meta)
            .await?;
        if report.accepted.is_empty() {
            let none_valid = Error::invalid(
                "invalid_batch",
                "events",
                "no event in the batch is valid; see rejected",
            );
            let body = json!({
                "error": response::error_object(&none_valid),
                "accepted": [],
                "rejected": report.rejected,
            });
            return Ok(response::json(StatusCode::BAD_REQUEST, &body));
        }
        Ok(response::json(StatusCode::ACCEPTED, &report))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Wrapped<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

/// `{ "events": [...] }` or `[...]`.
fn parse_batch(body: &str) -> Result<Vec<&RawValue>> {
    let bad = |e: serde_json::Error| {
        Error::invalid(
            "invalid_json",
            "events",
            format!("body must be {{\"events\": [...]}} or a JSON array of events: {e}"),
        )
    };
    if body.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<&RawValue>>(body).map_err(bad)
    } else {
        serde_json::from_str::<Wrapped<'_>>(body)
            .map(|w| w.events)
            .map_err(bad)
    }
}

/// Checks each channel: webhooks against SSRF ([`crate::alerts::webhook::check_url`]), SNS topics' ARNs.
async fn check_channels(channels: &[crate::alerts::Channel], allow_loopback: bool) -> Result<()> {
    for (i, c) in channels.iter().enumerate() {
        match c {
            crate::alerts::Channel::Webhook { url } => {
                let field = format!("channels[{i}].url");
                crate::alerts::webhook::check_url(url, allow_loopback, &field).await?;
            }
            crate::alerts::Channel::Sns { topic_arn } => {
                crate::alerts::sns::check_arn(topic_arn, &format!("channels[{i}].topicArn"))?;
            }
        }
    }
    Ok(())
}
