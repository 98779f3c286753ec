//! Local HTTP server: `commerce_analytics::api::Api` behind hyper, with the micro-batching buffer as the
//! sink.
//!
//! Every request is converted to the `lambda_http` request type the Lambda functions receive (with the
//! socket peer as [`PeerAddr`] in place of API Gateway's source IP) and handled by the same code.
//!
//! Lifecycle: [`start`] applies migrations, replays the write-ahead log and spill files left by an earlier
//! run, starts the buffer and binds the listener. [`LocalServer::stop`] stops accepting, gives requests in
//! flight [`REQUEST_DRAIN`], puts every accepted event on disk (the log in durable mode, a spill file
//! otherwise) and only then spends up to the grace period flushing to ClickHouse: a supervisor that kills
//! the process during that flush loses nothing.
//!
//! Connections (what API Gateway does on AWS; settings `server_*`): at most `server_max_connections` open
//! (one more gets a JSON 503 and is closed); headers must arrive within `server_header_timeout_seconds`,
//! which is also how long a keep-alive connection may sit idle; a body must arrive within
//! `server_body_timeout_seconds` (else 408). A request target over [`MAX_URI_BYTES`] is a JSON 414, headers
//! over [`MAX_HEADER_BYTES`] or [`MAX_HEADERS`] a JSON 431. Beyond hyper's own ceilings (a target over
//! 64 KiB, a head over ~400 KiB or more than [`HYPER_MAX_HEADERS`] headers) hyper answers 414/431 itself,
//! with an empty body, before any of our code runs.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use commerce_analytics::api::{Api, PeerAddr, response};
use commerce_analytics::auth::{Authenticator, keys};
use commerce_analytics::clock::SystemClock;
use commerce_analytics::config::{Config, ServerLimits};
use commerce_analytics::error::{Error, Result};
use commerce_analytics::event::Validator;
use commerce_analytics::ingest::Ingest;
use commerce_analytics::sink::wal::{self, Wal};
use commerce_analytics::sink::{BufferConfig, BufferHandle, BufferedSink, DiscardSink, EventSink};
use commerce_analytics::store::Warehouse;
use commerce_analytics::tracker::Tracker;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

/// Longest request target we read (local server); API Gateway allows about as much.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header section we read (names + values).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Most headers in one request.
pub const MAX_HEADERS: usize = 100;
/// hyper's own header count limit, set above ours so that ours (with a JSON answer) applies first.
pub const HYPER_MAX_HEADERS: usize = 1000;
/// Connections refused at once (each gets its 503 written); beyond, a refused connection is just closed.
const REFUSALS_IN_FLIGHT: usize = 256;

#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub addr: SocketAddr,
    /// Where a memory buffer's events are written on shutdown; replayed from on start.
    pub spill_dir: PathBuf,
    /// The durable buffer's write-ahead log (setting `durable_buffer`); replayed from on start.
    pub wal_dir: PathBuf,
    /// How long shutdown spends flushing to ClickHouse (after everything is on disk).
    pub shutdown_grace: Duration,
}

impl ServerOptions {
    /// The defaults of `analytics serve`.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            spill_dir: PathBuf::from("var/spill"),
            wal_dir: PathBuf::from("var/wal"),
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }
}

/// How long a stopping server waits for requests in flight before it closes their connections.
pub const REQUEST_DRAIN: Duration = Duration::from_secs(5);

/// How long a stopping server tries to flush to ClickHouse once every accepted event is on disk. With
/// [`REQUEST_DRAIN`], SIGTERM exits within about 9 s even with ClickHouse down: under the 10 s a
/// container runtime waits before its SIGKILL, and the events are on disk after at most 5 s anyway.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

#[derive(Debug)]
pub struct LocalServer {
    pub addr: SocketAddr,
    /// The configured warehouse (`provider`).
    pub warehouse: Warehouse,
    stop_tx: watch::Sender<bool>,
    serve_task: tokio::task::JoinHandle<()>,
    buffer: Option<BufferHandle>,
    wal: Option<Wal>,
    spill_dir: PathBuf,
    grace: Duration,
}

#[derive(Debug, Clone)]
struct AppState {
    api: Api,
    max_body: usize,
    limits: ServerLimits,
}

/// Starts the server; returns once it is listening.
pub async fn start(config: &Config, opts: ServerOptions) -> Result<LocalServer> {
    let warehouse = Warehouse::from_config(config)?;
    warehouse
        .migrate(config.max_retention_days())
        .await
        .map_err(|e| {
            Error::Config(format!(
                "cannot prepare {} ({e}); is it running? try `scripts/clickhouse start` (or \
                 `scripts/bigquery start` for the emulator)",
                warehouse.describe(config)
            ))
        })?;
    let events = warehouse.events();
    let seeded = keys::seed(
        &*warehouse.keys(),
        &config.keys,
        time::OffsetDateTime::now_utc(),
    )
    .await?;
    if seeded > 0 {
        tracing::info!(
            keys = seeded,
            "seeded configured API keys into the key table"
        );
    }
    for dir in [&opts.wal_dir, &opts.spill_dir] {
        let replayed = wal::replay(dir, &*events).await;
        if replayed.events > 0 || replayed.torn_lines > 0 {
            tracing::info!(events = replayed.events, files = replayed.files, torn_lines = replayed.torn_lines,
                dir = %dir.display(), "replayed buffered events left by the last run");
        }
    }

    let mut wal_log = None;
    let (sink, buffer): (Arc<dyn EventSink>, Option<BufferHandle>) = if config.enabled {
        let store_dyn = events.clone();
        let cfg = BufferConfig::from_config(config);
        let (sink, handle) = if config.durable_buffer {
            let log = Wal::open(&opts.wal_dir).map_err(|e| {
                Error::Config(format!(
                    "cannot open the write-ahead log in {} ({e}); set --wal-dir, or durable_buffer: false",
                    opts.wal_dir.display()
                ))
            })?;
            wal_log = Some(log.clone());
            BufferedSink::start_durable(store_dyn, cfg, log)
        } else {
            BufferedSink::start(store_dyn, cfg)
        };
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
    let ingest = Ingest::new(events.clone(), config, Arc::new(SystemClock));
    let keys = Authenticator::from_config(warehouse.keys(), config);
    keys.preload().await?;
    let api = Api::new(tracker, keys, config.limits)
        .with_rate_limit(config, Arc::new(SystemClock))
        .with_read_origins(&config.dashboard_origins)
        .with_ingest(Arc::new(ingest))
        .with_query_ports(
            warehouse.reads(),
            warehouse.dashboards(),
            warehouse.erasure(),
            Arc::new(SystemClock),
        )
        .with_alerts(
            warehouse.alerts(),
            config.alerts_allow_loopback,
            &config.public_url,
        );
    let state = AppState {
        api,
        max_body: config.limits.max_body_bytes,
        limits: config.server,
    };

    let listener = tokio::net::TcpListener::bind(opts.addr)
        .await
        .map_err(|e| Error::Config(format!("cannot listen on {}: {e}", opts.addr)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Internal(e.to_string()))?;
    warn_if_over_file_limit(config.server.max_connections);
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(alert_timer(
        warehouse.reads(),
        warehouse.alerts(),
        config.clone(),
        stop_rx.clone(),
    ));
    let serve_task = tokio::spawn(accept_loop(listener, state, stop_rx));
    Ok(LocalServer {
        addr,
        warehouse,
        stop_tx,
        serve_task,
        buffer,
        wal: wal_log,
        spill_dir: opts.spill_dir,
        grace: opts.shutdown_grace,
    })
}

/// Evaluates alerts every 5 minutes (as the `alerts` Lambda's schedule does) until told to stop; the
/// first run a minute after the start.
async fn alert_timer(
    reads: Arc<dyn commerce_analytics::query::ReadStore>,
    alerts: Arc<dyn commerce_analytics::alerts::AlertStore>,
    config: Config,
    mut stop: watch::Receiver<bool>,
) {
    use commerce_analytics::alerts::{run::Runner, webhook::Sender};
    let mut wait = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(wait) => {}
        }
        wait = Duration::from_secs(300);
        let runner = Runner::new(
            reads.as_ref(),
            alerts.as_ref(),
            Sender::new(config.alerts_allow_loopback),
            &config.public_url,
        );
        if let Err(e) = runner.run_all(jiff::Timestamp::now()).await {
            tracing::warn!(error = %e, "alert evaluation failed");
        }
    }
}

/// Accepts connections until told to stop, then waits for the open ones to finish their requests.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) {
    let open = Arc::new(Semaphore::new(state.limits.max_connections));
    let refusing = Arc::new(Semaphore::new(REFUSALS_IN_FLIGHT));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file handles (EMFILE) and the like: wait instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match open.clone().try_acquire_owned() {
            Ok(permit) => {
                let state = state.clone();
                let stop = stop.clone();
                connections.spawn(async move {
                    serve_connection(stream, peer, state, stop).await;
                    drop(permit);
                });
            }
            Err(_) => {
                if let Ok(permit) = refusing.clone().try_acquire_owned() {
                    let max = state.limits.max_connections;
                    tokio::spawn(async move {
                        refuse(stream, max).await;
                        drop(permit);
                    });
                }
            }
        }
    }
    drop(listener);
    while connections.join_next().await.is_some() {}
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    state: AppState,
    mut stop: watch::Receiver<bool>,
) {
    let header_timeout = state.limits.header_timeout;
    let service = hyper::service::service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, peer, req).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(HYPER_MAX_HEADERS);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stop.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Answers a connection over the cap with a JSON 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, max: usize) {
    let err = Error::Unavailable {
        message: format!("the server has {max} connections open, its limit; retry shortly"),
        retry_after: Duration::from_secs(1),
        failed_ids: Vec::new(),
    };
    let body = serde_json::json!({ "error": response::error_object(&err) }).to_string();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    let answer = async {
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the connection before it reads the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        std::io::Result::Ok(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), answer).await;
}

/// Logs a warning when the connection cap is above what the process may open (Linux).
fn warn_if_over_file_limit(max_connections: usize) {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse::<usize>().ok());
    if let Some(soft) = soft
        && max_connections + 64 > soft
    {
        tracing::warn!(
            max_connections,
            open_files_limit = soft,
            "server_max_connections is close to the open-files limit (ulimit -n): raise the limit or lower \
             the setting, or the process may run out of file handles before the cap applies"
        );
    }
}

/// What happened at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopReport {
    /// Events not stored in ClickHouse at exit: on disk, stored at the next start.
    pub spilled: usize,
    /// Where they are (a spill file, or the write-ahead log's folder).
    pub spill_file: Option<PathBuf>,
}

impl LocalServer {
    /// Counters of the buffer (None when `enabled: false`).
    pub fn buffer_stats(&self) -> Option<commerce_analytics::sink::buffer::BufferStats> {
        self.buffer.as_ref().map(BufferHandle::stats)
    }

    /// The durable buffer's log (None with `durable_buffer: false`).
    pub fn wal(&self) -> Option<&Wal> {
        self.wal.as_ref()
    }

    pub async fn stop(self) -> StopReport {
        let _ = self.stop_tx.send(true);
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
        let nothing = StopReport {
            spilled: 0,
            spill_file: None,
        };
        let Some(buffer) = self.buffer else {
            return nothing;
        };
        // Everything accepted goes to disk first (the log already holds it in durable mode), then the last
        // flush: killed during the flush, the process has lost nothing.
        let held = buffer.close();
        let spill = if buffer.is_durable() || held.is_empty() {
            None
        } else {
            match crate::spill::write(&self.spill_dir, &held) {
                Ok(path) => Some(path),
                Err(e) => {
                    tracing::error!(events = held.len(), error = %e,
                        "could not spill events; trying ClickHouse only");
                    None
                }
            }
        };
        let left = buffer.shutdown(self.grace).await;
        if left.is_empty() {
            if let Some(path) = &spill {
                let _ = std::fs::remove_file(path);
            }
            return nothing;
        }
        let place = match (&self.wal, spill) {
            (Some(log), _) => Some(log.dir().to_path_buf()),
            (None, Some(path)) => Some(path),
            (None, None) => {
                tracing::error!(
                    events = left.len(),
                    "events could not be stored or spilled; they are lost"
                );
                return nothing;
            }
        };
        tracing::error!(events = left.len(), place = ?place,
            "ClickHouse unavailable at shutdown: events kept on disk, stored at the next start");
        StopReport {
            spilled: left.len(),
            spill_file: place,
        }
    }
}

async fn handle(
    state: &AppState,
    peer: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if let Some(err) = oversized_head(&parts) {
        return to_hyper(response::error(&err));
    }
    let limited = http_body_util::Limited::new(body, state.max_body).collect();
    let bytes = match tokio::time::timeout(state.limits.body_timeout, limited).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            let err = Error::TooLarge {
                message: format!("body is larger than the limit of {} bytes", state.max_body),
                field: "body".into(),
            };
            return to_hyper(response::error(&err));
        }
        Err(_) => {
            let err = Error::RequestTimeout {
                message: format!(
                    "the body did not arrive within {} s",
                    state.limits.body_timeout.as_secs()
                ),
            };
            let mut resp = to_hyper(response::error(&err));
            resp.headers_mut().insert(
                hyper::header::CONNECTION,
                hyper::header::HeaderValue::from_static("close"),
            );
            return resp;
        }
    };
    let mut lreq =
        lambda_http::http::Request::from_parts(parts, lambda_http::Body::from(bytes.to_vec()));
    lreq.extensions_mut().insert(PeerAddr(peer));
    to_hyper(state.api.handle(lreq).await)
}

/// A request target or header section larger than this server reads.
fn oversized_head(parts: &hyper::http::request::Parts) -> Option<Error> {
    let target = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return Some(Error::UriTooLong {
            message: format!("the request target is {target} bytes; the limit is {MAX_URI_BYTES}"),
        });
    }
    let count = parts.headers.len();
    let size: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if count > MAX_HEADERS || size > MAX_HEADER_BYTES {
        return Some(Error::HeadersTooLarge {
            message: format!(
                "{count} headers of {size} bytes; the limits are {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes"
            ),
        });
    }
    None
}

fn to_hyper(resp: lambda_http::Response<lambda_http::Body>) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = resp.into_parts();
    let bytes: Vec<u8> = match body {
        lambda_http::Body::Empty => Vec::new(),
        lambda_http::Body::Text(t) => t.into_bytes(),
        lambda_http::Body::Binary(b) => b,
        other => other.as_ref().to_vec(),
    };
    hyper::Response::from_parts(parts, Full::new(Bytes::from(bytes)))
}
