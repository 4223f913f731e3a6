//! The HTTP side of `lgss serve`: routes, limits, authentication, access
//! log and graceful shutdown.

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use http_body_util::BodyExt;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::batcher::{self, Job, Queue};
use super::metrics::{Metrics, RequestLabels};
use super::{ModelInfo, Options};
use crate::data::movie::Movie;
use crate::model::config::ModelConfig;
use crate::scene_formats::{self, SceneFormat};
use crate::segment::{decision_from_options, schema_for, Decision, GroupingOverrides, Segmentation};

struct AppState {
    opts: Options,
    model: ModelInfo,
    config: ModelConfig,
    queue: Queue,
    metrics: Arc<Metrics>,
    draining: AtomicBool,
    uploads: tokio::sync::Semaphore,
    next_id: AtomicU64,
}

/// The id of a request: in the access log and the `x-request-id` header.
#[derive(Debug, Clone)]
struct RequestId(String);

/// When the request arrived (its `--timeout` counts from here).
#[derive(Debug, Clone, Copy)]
struct Arrival(Instant);

pub async fn serve(
    backend: Box<dyn crate::runtime::Backend>,
    model: ModelInfo,
    opts: Options,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let config = backend.config().clone();
    let (queue, _worker) =
        batcher::start(backend, opts.policy, metrics.clone()).context("cannot start the runtime thread")?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opts.listen))?;
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() && opts.token.is_none() {
        eprintln!(
            "warning: listening on {addr} beyond loopback without --token-file: anyone who reaches \
             this port can use the model"
        );
    }
    let state = Arc::new(AppState {
        uploads: tokio::sync::Semaphore::new(opts.max_uploads.max(1)),
        opts,
        model,
        config,
        queue,
        metrics,
        draining: AtomicBool::new(false),
        next_id: AtomicU64::new(1),
    });
    let page = crate::page::serve_page(&crate::page::ServeSettings {
        model: state.model.path.file_name().map_or_else(
            || state.model.path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        ),
        max_body: state.opts.max_body,
        token_required: state.opts.token.is_some(),
    })?;
    let page = Arc::new(page);
    let app = Router::new()
        .route("/", get(move || index(page.clone())))
        .route("/v1/segment", post(segment))
        .route("/v1/model", get(model_info))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), access))
        .with_state(state.clone());
    let stop = Arc::new(tokio::sync::Notify::new());
    let server = tokio::spawn(accept_loop(listener, app, state.opts.read_timeout, stop.clone()));
    ready(addr);
    wait_for_signal().await?;
    state.draining.store(true, Ordering::SeqCst);
    eprintln!(
        "lgss serve: stopping: no new connections; finishing requests in flight (up to {:?})",
        state.opts.drain_timeout
    );
    stop.notify_one();
    match tokio::time::timeout(state.opts.drain_timeout, server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => anyhow::bail!("the HTTP server failed: {e}"),
        Err(_) => eprintln!(
            "lgss serve: drain timeout: requests still in flight after {:?} were cut off",
            state.opts.drain_timeout
        ),
    }
    eprintln!("lgss serve: stopped");
    Ok(())
}

/// Accepts connections until `stop`, then waits for the open ones to finish
/// their requests. Each connection is HTTP/1.1 with a header-read timeout
/// (`axum::serve` sets none), so a client that opens connections and
/// trickles headers, or idles between requests, is disconnected after
/// `header_timeout` instead of holding a socket and a task for ever.
async fn accept_loop(
    listener: tokio::net::TcpListener,
    app: Router,
    header_timeout: Duration,
    stop: Arc<tokio::sync::Notify>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let open = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: pause rather than spin.
                    eprintln!("lgss serve: cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.notified() => break,
        };
        // Responses are written whole; no reason to wait for an ACK before the last segment.
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let connection = open.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // A client that hangs up or times out ends only its own connection.
            let _ = connection.await;
        });
    }
    drop(listener);
    open.shutdown().await;
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// A one-line JSON error: `{"error": …, "status": …}`.
fn error(status: StatusCode, msg: impl Display) -> Response {
    let body = serde_json::json!({ "error": msg.to_string(), "status": status.as_u16() }).to_string() + "\n";
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// 503 with a hint of when to come back.
fn busy(msg: impl Display) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, msg);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The metrics label of a path: known routes by name, anything else `other`.
fn route_label(path: &str) -> &'static str {
    match path {
        "/" => "/",
        "/v1/segment" => "/v1/segment",
        "/v1/model" => "/v1/model",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        _ => "other",
    }
}

/// Whether `headers` carry the token (compared in constant time).
fn authorized(token: &str, headers: &HeaderMap) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
    else {
        return false;
    };
    bool::from(given.ct_eq(token.as_bytes()))
}

/// Every request: an id, authentication of `/v1/`, metrics and one access
/// log line (the token is never logged: headers are not).
async fn access(State(st): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = format!(
        "{:x}-{}",
        std::process::id(),
        st.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let method = req.method().clone();
    let path = crate::data::pickle::printable(req.uri().path());
    req.extensions_mut().insert(RequestId(id.clone()));
    req.extensions_mut().insert(Arrival(start));
    let denied = matches!(&st.opts.token, Some(token) if path.starts_with("/v1/") && !authorized(token, req.headers()));
    let mut resp = if denied {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "this server needs `Authorization: Bearer TOKEN` on /v1/ routes",
        );
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    } else {
        next.run(req).await
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let status = resp.status().as_u16();
    let seconds = start.elapsed().as_secs_f64();
    st.metrics
        .requests
        .get_or_create(&RequestLabels {
            route: route_label(&path),
            status,
        })
        .inc();
    st.metrics.latency.observe(seconds);
    eprintln!(
        "lgss serve: {id} {method} {path} {status} {:.1} ms",
        seconds * 1e3
    );
    resp
}

/// The page: drop a movie, see its scenes (the API does the work; the
/// page holds no secret, so it needs no token itself).
async fn index(page: Arc<crate::page::ServePage>) -> Response {
    let policy =
        HeaderValue::from_str(&page.policy).unwrap_or(HeaderValue::from_static("default-src 'none'"));
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (header::CONTENT_SECURITY_POLICY, policy),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        page.html.clone(),
    )
        .into_response()
}

async fn healthz() -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"alive\"}\n",
    )
        .into_response()
}

async fn readyz(State(st): State<Arc<AppState>>) -> Response {
    if st.draining.load(Ordering::SeqCst) {
        return error(StatusCode::SERVICE_UNAVAILABLE, "draining: shutting down");
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"ready\"}\n",
    )
        .into_response()
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        st.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "no such route (GET / (the page), POST /v1/segment, GET /v1/model, /healthz, /readyz, /metrics)",
    )
}

async fn model_info(State(st): State<Arc<AppState>>) -> Response {
    let m = &st.model;
    let body = serde_json::json!({
        "runtime": m.runtime,
        "model": m.path,
        "sha256": m.sha256,
        "config": st.config,
        "interface": crate::runtime::INTERFACE,
        "decision_threshold": m.stored.threshold,
        "grouping_choice": m.stored.grouping,
        "scene_length_prior": m.stored.length_prior.is_some(),
        "default_rule": "global",
        "batch": st.opts.policy.batch,
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string() + "\n",
    )
        .into_response()
}

/// `POST /v1/segment`'s query: `segment`'s output options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SegmentQuery {
    format: Option<String>,
    rule: Option<String>,
    threshold: Option<f64>,
    fps: Option<f64>,
    coherence: Option<f64>,
    length_weight: Option<f64>,
    max_scene_shots: Option<usize>,
}

/// The options of one request, settled as `lgss segment` settles its flags.
fn settle(q: SegmentQuery, model: &ModelInfo) -> Result<(SceneFormat, Decision), String> {
    let format = match q.format.as_deref() {
        None => SceneFormat::Json,
        Some(f) => SceneFormat::parse(f)
            .ok_or_else(|| format!("format {f:?}: want json, csv, webvtt, edl or otio"))?,
    };
    let overrides = GroupingOverrides {
        coherence: q.coherence,
        length_weight: q.length_weight,
        max_scene_shots: q.max_scene_shots,
    };
    let decision = decision_from_options(q.rule.as_deref(), q.threshold, q.fps, &overrides, &model.stored)?;
    format.check_fps(decision.fps)?;
    Ok((format, decision))
}

/// The body, refused with 413 past `limit` bytes and with 408 when the
/// client sends nothing for `idle`.
async fn read_body(mut body: Body, limit: usize, idle: Duration, hint: usize) -> Result<Vec<u8>, Response> {
    let mut buf = Vec::with_capacity(hint.min(limit));
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => {
                return Err(error(
                    StatusCode::REQUEST_TIMEOUT,
                    format!("the upload sent nothing for {} s", idle.as_secs_f64()),
                ))
            }
            Ok(None) => return Ok(buf),
            Ok(Some(Err(e))) => {
                return Err(error(StatusCode::BAD_REQUEST, format!("the upload failed: {e}")))
            }
            Ok(Some(Ok(frame))) => frame,
        };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
}

/// A refusal decided before the body is read. Closing a socket that still
/// holds unread upload makes the kernel reset the connection, and a client
/// that sends its whole body before reading (Python's `http.client`) then
/// sees a broken pipe instead of the 503 and its `Retry-After`, or finds
/// its keep-alive connection closed under it at the next request. So the
/// body is read and thrown away first: no memory kept, bounded by
/// `--max-body` and `--read-timeout`, at network speed. A client that sent
/// `Expect: 100-continue` has not sent its body and gets the answer at once.
async fn refuse_unread(
    st: &AppState,
    headers: &HeaderMap,
    mut body: Body,
    mut refusal: Response,
) -> Response {
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        return refusal;
    }
    let mut seen = 0usize;
    let drained = loop {
        match tokio::time::timeout(st.opts.read_timeout, body.frame()).await {
            Ok(None) => break true,
            Ok(Some(Ok(frame))) => {
                seen += frame.data_ref().map_or(0, |d| d.len());
                if seen > st.opts.max_body {
                    break false;
                }
            }
            Ok(Some(Err(_))) | Err(_) => break false,
        }
    };
    if !drained {
        refusal
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    refusal
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("the body is over --max-body ({limit} bytes)"),
    )
}

async fn segment(
    State(st): State<Arc<AppState>>,
    Extension(RequestId(id)): Extension<RequestId>,
    Extension(Arrival(arrival)): Extension<Arrival>,
    query: Result<Query<SegmentQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if st.draining.load(Ordering::SeqCst) {
        return refuse_unread(&st, &headers, body, busy("draining: shutting down")).await;
    }
    let (format, decision) = match query
        .map_err(|e| e.body_text())
        .and_then(|Query(q)| settle(q, &st.model))
    {
        Ok(s) => s,
        Err(msg) => return refuse_unread(&st, &headers, body, error(StatusCode::BAD_REQUEST, msg)).await,
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.opts.max_body as u64) {
        return too_large(st.opts.max_body);
    }
    let Ok(permit) = st.uploads.try_acquire() else {
        let refusal = busy(format!(
            "{} uploads in progress (--max-uploads)",
            st.opts.max_uploads
        ));
        return refuse_unread(&st, &headers, body, refusal).await;
    };
    let hint = declared.map_or(0, |n| n as usize);
    let bytes = match read_body(body, st.opts.max_body, st.opts.read_timeout, hint).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let deadline = tokio::time::Instant::from_std(arrival + st.opts.timeout);
    let work = answer(st.clone(), id, format, decision, bytes, permit);
    match tokio::time::timeout_at(deadline, work).await {
        Ok(r) => r,
        // Dropping `work` drops its reply channel: the runtime thread skips
        // the movie's windows not yet run.
        Err(_) => error(
            StatusCode::GATEWAY_TIMEOUT,
            format!(
                "not answered within --timeout ({} s)",
                st.opts.timeout.as_secs_f64()
            ),
        ),
    }
}

/// Parses, queues, waits for the probabilities and decides the scenes.
async fn answer(
    st: Arc<AppState>,
    id: String,
    format: SceneFormat,
    decision: Decision,
    bytes: Vec<u8>,
    permit: tokio::sync::SemaphorePermit<'_>,
) -> Response {
    let schema = schema_for(&st.config);
    let parsed = tokio::task::spawn_blocking(move || Movie::from_pickle_bytes(&bytes, &schema)).await;
    // The upload's bytes are gone: another upload may start.
    drop(permit);
    let movie = match parsed {
        Ok(Ok(m)) => Arc::new(m),
        Ok(Err(problem)) => return error(StatusCode::BAD_REQUEST, format!("not a valid movie: {problem}")),
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the reader failed: {e}"),
            )
        }
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = Job {
        movie: movie.clone(),
        reply: tx,
    };
    if st.queue.submit(job).is_err() {
        return busy("the queue is full (--queue)");
    }
    let prob = match rx.await {
        Ok(Ok(p)) => p,
        Ok(Err(msg)) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the runtime failed: {msg}"),
            )
        }
        Err(_) => return error(StatusCode::INTERNAL_SERVER_ERROR, "the runtime thread stopped"),
    };
    let st2 = st.clone();
    let rendered = tokio::task::spawn_blocking(move || -> Result<String, String> {
        let seg = Segmentation::new(
            &movie,
            std::path::Path::new(&id),
            &st2.model.runtime,
            &prob,
            &st2.config.ratio,
            decision.threshold,
            decision.fps,
            decision.global,
        )
        .map_err(|e| format!("global grouping: {e}"))?;
        scene_formats::render(&seg, format).map_err(|e| format!("{e:#}"))
    })
    .await;
    match rendered {
        Ok(Ok(text)) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, format.media_type())],
            text,
        )
            .into_response(),
        Ok(Err(msg)) => error(StatusCode::BAD_REQUEST, msg),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, format!("grouping failed: {e}")),
    }
}
