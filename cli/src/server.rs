//! Local HTTP server: `commerce_analytics::api::Api` behind axum, with the micro-batching buffer as the sink.
//!
//! Every request is converted to the `lambda_http` request type the Lambda functions receive (with the
//! socket peer as [`PeerAddr`] in place of API Gateway's source IP) and handled by the same code.
//!
//! Lifecycle: [`start`] applies migrations, replays spill files left by an earlier shutdown, starts the
//! buffer and binds the listener. [`LocalServer::stop`] stops accepting requests, lets in-flight requests
//! finish, flushes the buffer, and spills to disk whatever ClickHouse did not take within the grace period.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use commerce_analytics::api::{Api, PeerAddr, response};
use commerce_analytics::auth::{Authenticator, keys};
use commerce_analytics::clock::SystemClock;
use commerce_analytics::config::Config;
use commerce_analytics::error::{Error, Result};
use commerce_analytics::event::Validator;
use commerce_analytics::ingest::Ingest;
use commerce_analytics::sink::{BufferConfig, BufferHandle, BufferedSink, DiscardSink, EventSink};
use commerce_analytics::store::{ClickHouseStore, EventStore};
use commerce_analytics::tracker::Tracker;
use http_body_util::BodyExt;
use tokio::sync::oneshot;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub addr: SocketAddr,
    /// Where unflushed events are written on shutdown and replayed from on start.
    pub spill_dir: PathBuf,
    /// How long shutdown waits for ClickHouse before spilling.
    pub shutdown_grace: Duration,
}

#[derive(Debug)]
pub struct LocalServer {
    pub addr: SocketAddr,
    pub store: ClickHouseStore,
    stop_tx: oneshot::Sender<()>,
    serve_task: tokio::task::JoinHandle<()>,
    buffer: Option<BufferHandle>,
    spill_dir: PathBuf,
    grace: Duration,
}

#[derive(Debug, Clone)]
struct AppState {
    api: Api,
    max_body: usize,
}

/// Starts the server; returns once it is listening.
pub async fn start(config: &Config, opts: ServerOptions) -> Result<LocalServer> {
    config.ensure_supported()?;
    let store = ClickHouseStore::new(&config.clickhouse);
    store.migrate(config.max_retention_days()).await.map_err(|e| {
        Error::Config(format!(
            "cannot prepare ClickHouse at {} ({e}); is it running? try `scripts/clickhouse start`",
            config.clickhouse.url
        ))
    })?;
    let seeded = keys::seed(&store, &config.keys, time::OffsetDateTime::now_utc()).await?;
    if seeded > 0 {
        tracing::info!(
            keys = seeded,
            "seeded configured API keys into the key table"
        );
    }
    let replayed = crate::spill::replay(&opts.spill_dir, &store).await;
    if replayed > 0 {
        tracing::info!(events = replayed, "replayed spilled events");
    }

    let (sink, buffer): (Arc<dyn EventSink>, Option<BufferHandle>) = if config.enabled {
        let store_dyn: Arc<dyn EventStore> = Arc::new(store.clone());
        let (sink, handle) = BufferedSink::start(store_dyn, BufferConfig::from_config(config));
        (Arc::new(sink), Some(handle))
    } else {
        tracing::warn!(
            "analytics.enabled is false: events are validated and acknowledged but not stored"
        );
        (Arc::new(DiscardSink), None)
    };
    let tracker = Arc::new(Tracker::new(
        Validator::from_config(config),
        sink,
        Arc::new(SystemClock),
    ));
    let ingest = Ingest::new(Arc::new(store.clone()), config, Arc::new(SystemClock));
    let keys = Authenticator::from_config(Arc::new(store.clone()), config);
    keys.preload().await?;
    let api = Api::new(tracker, keys, config.limits)
        .with_rate_limit(config, Arc::new(SystemClock))
        .with_read_origins(&config.dashboard_origins)
        .with_ingest(Arc::new(ingest))
        .with_queries(Arc::new(store.clone()), Arc::new(SystemClock));
    let state = AppState {
        api,
        max_body: config.limits.max_body_bytes,
    };

    let app = axum::Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", opts.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let serve_task = tokio::spawn(async move {
        let served = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "local server failed");
        }
    });
    Ok(LocalServer {
        addr,
        store,
        stop_tx,
        serve_task,
        buffer,
        spill_dir: opts.spill_dir,
        grace: opts.shutdown_grace,
    })
}

/// How long a stopping server waits for requests in flight before it closes their connections.
pub const REQUEST_DRAIN: Duration = Duration::from_secs(5);

/// What happened at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    pub spilled: usize,
    pub spill_file: Option<PathBuf>,
}

impl LocalServer {
    /// Counters of the buffer (None when `enabled: false`).
    pub fn buffer_stats(&self) -> Option<commerce_analytics::sink::buffer::BufferStats> {
        self.buffer.as_ref().map(BufferHandle::stats)
    }

    pub async fn stop(self) -> StopReport {
        let _ = self.stop_tx.send(());
        // Requests in flight get [`REQUEST_DRAIN`] to finish; a client still uploading after that (one
        // trickling a byte every few seconds) is cut off, so it can never hold the flush and the spill
        // back. Nothing it sent was acknowledged, so nothing accepted is lost.
        let mut serve_task = self.serve_task;
        if tokio::time::timeout(REQUEST_DRAIN, &mut serve_task)
            .await
            .is_err()
        {
            tracing::warn!(
                "requests still in flight after {REQUEST_DRAIN:?}; closing their connections"
            );
            serve_task.abort();
        }
        let Some(buffer) = self.buffer else {
            return StopReport {
                spilled: 0,
                spill_file: None,
            };
        };
        let left = buffer.shutdown(self.grace).await;
        if left.is_empty() {
            return StopReport {
                spilled: 0,
                spill_file: None,
            };
        }
        match crate::spill::write(&self.spill_dir, &left) {
            Ok(path) => {
                tracing::error!(events = left.len(), file = %path.display(),
                    "ClickHouse unavailable at shutdown: events spilled to disk, replayed on next start");
                StopReport {
                    spilled: left.len(),
                    spill_file: Some(path),
                }
            }
            Err(e) => {
                tracing::error!(events = left.len(), error = %e, "could not spill events; they are lost");
                StopReport {
                    spilled: 0,
                    spill_file: None,
                }
            }
        }
    }
}

async fn handle(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
) -> axum::response::Response {
    let (parts, body) = req.into_parts();
    let bytes = match http_body_util::Limited::new(body, state.max_body)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            let err = Error::TooLarge {
                message: format!("body is larger than the limit of {} bytes", state.max_body),
                field: "body".into(),
            };
            return to_axum(response::error(&err));
        }
    };
    let mut lreq =
        lambda_http::http::Request::from_parts(parts, lambda_http::Body::from(bytes.to_vec()));
    lreq.extensions_mut().insert(PeerAddr(peer));
    to_axum(state.api.handle(lreq).await)
}

fn to_axum(resp: lambda_http::Response<lambda_http::Body>) -> axum::response::Response {
    let (parts, body) = resp.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        other => other.as_ref().to_vec(),
    };
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}
