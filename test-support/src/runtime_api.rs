//! A local AWS Lambda Runtime API (the `2018-06-01` interface `lambda_runtime` speaks), to run the real
//! function binaries exactly as Lambda does: the binary starts, polls `invocation/next`, gets an event,
//! posts its response. Used by the cold-start benchmark (`coldstart`) and by the test that runs every
//! `events/` fixture through its function's binary.
//!
//! Only what a function needs is served: `GET …/invocation/next` (hands out the queued events in order,
//! then waits), `POST …/invocation/{id}/response`, `POST …/invocation/{id}/error` and
//! `POST …/init/error`. `cargo lambda watch --only-lambda-apis` offers the same interface interactively.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use tokio::sync::mpsc;

/// Why a run of a function binary failed.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeApiError {
    /// The local runtime API could not listen on loopback.
    #[error("the local runtime API cannot listen: {0}")]
    Listen(#[source] std::io::Error),
    /// The function binary could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    /// The function failed: it reported an init error, exited, or did not answer every event in time.
    /// `stderr` is what it logged.
    #[error("{function}: {reason}\n--- stderr ---\n{stderr}")]
    Function {
        function: String,
        reason: String,
        stderr: String,
    },
}

/// What the function sent back for one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Response(serde_json::Value),
    Error(serde_json::Value),
}

/// One run of a function binary over a list of events.
#[derive(Debug)]
pub struct Run {
    /// From process spawn to its first `invocation/next` (the init phase Lambda reports).
    pub init: Duration,
    /// From process spawn to the first response posted.
    pub first_response: Duration,
    /// One reply per event, in order.
    pub replies: Vec<Reply>,
}

enum Signal {
    Next,
    Reply(String, Reply),
    InitError(String),
}

struct Shared {
    queue: Mutex<VecDeque<(String, Vec<u8>)>>,
    signals: mpsc::UnboundedSender<Signal>,
    function_arn: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn next(State(s): State<Arc<Shared>>) -> (StatusCode, HeaderMap, Vec<u8>) {
    let _ = s.signals.send(Signal::Next);
    loop {
        let item = lock(&s.queue).pop_front();
        if let Some((id, body)) = item {
            let mut h = HeaderMap::new();
            let deadline = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 300_000;
            let put = |h: &mut HeaderMap, k: &'static str, v: &str| {
                if let Ok(v) = HeaderValue::from_str(v) {
                    h.insert(k, v);
                }
            };
            put(&mut h, "lambda-runtime-aws-request-id", &id);
            put(&mut h, "lambda-runtime-deadline-ms", &deadline.to_string());
            put(
                &mut h,
                "lambda-runtime-invoked-function-arn",
                &s.function_arn,
            );
            put(
                &mut h,
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000;Sampled=0",
            );
            put(&mut h, "content-type", "application/json");
            return (StatusCode::OK, h, body);
        }
        // Nothing queued: Lambda would freeze the sandbox here; the caller ends the process.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn parse(body: &Bytes) -> serde_json::Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// `POST …/invocation/{id}/response` and `…/{id}/error`.
async fn reply(
    State(s): State<Arc<Shared>>,
    UrlPath((id, kind)): UrlPath<(String, String)>,
    body: Bytes,
) -> StatusCode {
    let reply = match kind.as_str() {
        "response" => Reply::Response(parse(&body)),
        "error" => Reply::Error(parse(&body)),
        _ => return StatusCode::NOT_FOUND,
    };
    let _ = s.signals.send(Signal::Reply(id, reply));
    StatusCode::ACCEPTED
}

async fn init_error(State(s): State<Arc<Shared>>, body: Bytes) -> StatusCode {
    let _ = s.signals.send(Signal::InitError(
        String::from_utf8_lossy(&body).into_owned(),
    ));
    StatusCode::ACCEPTED
}

/// Starts `binary` as function `name` with a runtime API serving `events`, waits for a reply to each (at
/// most `timeout` in all), then kills the process. `env` is added to the function's environment (its
/// configuration); the Lambda variables are set here.
pub async fn invoke(
    binary: &Path,
    name: &str,
    env: &[(String, String)],
    events: Vec<Vec<u8>>,
    timeout: Duration,
) -> Result<Run, RuntimeApiError> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let ids: Vec<String> = (0..events.len())
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let shared = Arc::new(Shared {
        queue: Mutex::new(ids.iter().cloned().zip(events).collect()),
        signals: tx,
        function_arn: format!("arn:aws:lambda:us-east-1:123456789012:function:{name}"),
    });
    let app = Router::new()
        .route("/2018-06-01/runtime/invocation/next", get(next))
        .route("/2018-06-01/runtime/invocation/{id}/{kind}", post(reply))
        .route("/2018-06-01/runtime/init/error", post(init_error))
        .with_state(shared);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(RuntimeApiError::Listen)?;
    let addr = listener.local_addr().map_err(RuntimeApiError::Listen)?;
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("AWS_LAMBDA_RUNTIME_API", addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", name)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "local")
        .env("AWS_REGION", "us-east-1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| RuntimeApiError::Spawn {
            binary: binary.display().to_string(),
            source,
        })?;

    let mut init = None;
    let mut first_response = None;
    let mut replies: Vec<Option<Reply>> = vec![None; ids.len()];
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = loop {
        if replies.iter().all(Option::is_some) {
            break Ok(());
        }
        tokio::select! {
            signal = rx.recv() => match signal {
                Some(Signal::Next) => { init.get_or_insert_with(|| started.elapsed()); }
                Some(Signal::Reply(id, reply)) => {
                    first_response.get_or_insert_with(|| started.elapsed());
                    if let Some(i) = ids.iter().position(|x| *x == id) {
                        replies[i] = Some(reply);
                    }
                }
                Some(Signal::InitError(e)) => break Err(format!("init error: {e}")),
                None => break Err("runtime API stopped".to_owned()),
            },
            status = child.wait() => {
                break Err(format!("exited early ({status:?})"));
            }
            () = tokio::time::sleep_until(deadline) => {
                break Err(format!("no reply to every event within {timeout:?}"));
            }
        }
    };
    let _ = child.start_kill();
    let output = child.wait_with_output().await.ok();
    server.abort();
    if let Err(reason) = outcome {
        return Err(RuntimeApiError::Function {
            function: name.to_owned(),
            reason,
            stderr: output
                .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_default(),
        });
    }
    Ok(Run {
        init: init.unwrap_or_default(),
        first_response: first_response.unwrap_or_default(),
        replies: replies.into_iter().flatten().collect(),
    })
}
