//! `lgss serve`: scenes over HTTP from a model loaded once.
//!
//! Requests are read and parsed on tokio's threads (the pickle reader on
//! the blocking pool), then queued for the one runtime thread
//! ([`batcher`]), which runs windows of several requests' movies together.
//! Every limit answers with its own status and a one-line JSON error, so a
//! client (or a load balancer) can tell "too big" from "busy" from "broken".
//! TLS is left to a proxy in front.

pub mod batcher;
mod http;
pub mod metrics;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::model::checkpoint::StoredChoices;
use crate::runtime::Backend;

pub use batcher::BatchPolicy;

/// How the server runs and what it refuses.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    pub policy: BatchPolicy,
    /// Request bodies over this many bytes get 413, before they are read.
    pub max_body: usize,
    /// An upload that sends nothing for this long gets 408; a connection
    /// that takes longer than this to send a request's headers (or idles
    /// this long between requests) is closed.
    pub read_timeout: Duration,
    /// Uploads read at once; more get 503 (memory is bounded by
    /// `max_uploads × max_body` plus the queued movies).
    pub max_uploads: usize,
    /// A request not answered this long after it arrived gets 504, and its
    /// windows not yet run are dropped.
    pub timeout: Duration,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish.
    pub drain_timeout: Duration,
    /// With a token, every `/v1/` route needs `Authorization: Bearer TOKEN`.
    pub token: Option<String>,
}

/// The model being served, as `GET /v1/model` describes it.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub runtime: String,
    pub path: PathBuf,
    pub sha256: String,
    pub stored: StoredChoices,
}

/// Serves until SIGTERM or SIGINT, then drains; `ready` is called with the
/// bound address once the server accepts connections.
pub fn run(
    backend: Box<dyn Backend>,
    model: ModelInfo,
    opts: Options,
    ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    // A client that hangs up mid-response must cost an error on that
    // connection, not the process (main restores SIGPIPE's default for the
    // other commands).
    // SAFETY: changing one signal's disposition before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lgss-http")
        .build()
        .context("cannot start the HTTP runtime")?;
    runtime.block_on(http::serve(backend, model, opts, ready))
}
