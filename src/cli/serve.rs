//! `lgss serve`: the model behind HTTP (see `crate::serve`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::segment::{stored_choices, ModelArgs};
use crate::runtime::{open, RuntimeKind};
use crate::serve::{BatchPolicy, ModelInfo, Options};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The runtime (default: the best CPU runtime this build has: ort-cpu,
    /// else tract).
    #[arg(long)]
    runtime: Option<RuntimeKind>,
    #[command(flatten)]
    model: ModelArgs,
    /// Address to listen on (port 0: any free port, printed at start).
    /// Beyond loopback, use --token-file; TLS belongs to a proxy in front.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Require `Authorization: Bearer TOKEN` on every /v1/ route, TOKEN being
    /// this file's content (surrounding whitespace removed).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Largest request body in bytes (a 2,400-shot full-width movie is ~34 MB).
    #[arg(long, default_value_t = 128 << 20)]
    max_body: usize,
    /// Uploads read at once; more get 503. Memory is bounded by
    /// max-uploads × max-body plus the queued movies.
    #[arg(long, default_value_t = 8)]
    max_uploads: usize,
    /// Movies waiting for the runtime at most; more get 503 with Retry-After.
    #[arg(long, default_value_t = 32)]
    queue: usize,
    /// Milliseconds a runtime run that is not full waits for more requests.
    #[arg(long, default_value_t = 2.0)]
    batch_wait_ms: f64,
    /// Run each request's windows apart (no run holds two movies), as
    /// `segment` does; for measuring what batching across requests gains.
    #[arg(long)]
    per_request_batches: bool,
    /// Seconds an upload may send nothing before it gets 408; also the time a
    /// connection has to send a request's headers (else it is closed).
    #[arg(long, default_value_t = 10.0)]
    read_timeout: f64,
    /// Seconds from a request's arrival to its answer, else 504 (its windows
    /// not yet run are dropped).
    #[arg(long, default_value_t = 60.0)]
    timeout: f64,
    /// Seconds requests in flight may take to finish after SIGTERM/SIGINT
    /// (below Kubernetes' default 30 s grace period).
    #[arg(long, default_value_t = 20.0)]
    drain_timeout: f64,
}

fn seconds(flag: &str, s: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{flag} {s}: want a positive number of seconds"))
}

fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = crate::regular_file::read_to_string(path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let token = text.trim();
    if token.is_empty() {
        bail!("{}: the token file is empty", path.display());
    }
    if token.chars().any(|c| c.is_control() || c == ' ') {
        bail!("{}: the token holds spaces or control characters", path.display());
    }
    Ok(token.to_string())
}

pub fn run(args: Args, ort_lib: Option<&Path>, ws: &super::workspace::Workspace) -> anyhow::Result<()> {
    let runtime = match args.runtime {
        Some(r) => r,
        None => RuntimeKind::default_built().context("this build of lgss has no runtime")?,
    };
    crate::runtime::require_built(runtime)?;
    let opts = Options {
        listen: args.listen,
        policy: BatchPolicy {
            batch: args.model.batch.max(1),
            max_wait: Duration::try_from_secs_f64(args.batch_wait_ms / 1e3)
                .with_context(|| format!("--batch-wait-ms {}: want a number ≥ 0", args.batch_wait_ms))?,
            capacity: args.queue.max(1),
            across_requests: !args.per_request_batches,
        },
        max_body: args.max_body,
        read_timeout: seconds("read-timeout", args.read_timeout)?,
        max_uploads: args.max_uploads.max(1),
        timeout: seconds("timeout", args.timeout)?,
        drain_timeout: seconds("drain-timeout", args.drain_timeout)?,
        token: args.token_file.as_deref().map(read_token).transpose()?,
    };
    let ropts = args.model.options(ort_lib, ws, &[runtime])?;
    let path = match runtime.feature() {
        "tch" => ropts.checkpoint.clone(),
        _ => ropts.onnx.clone(),
    }
    .context("no model for this runtime")?;
    let model = ModelInfo {
        runtime: runtime.to_string(),
        sha256: crate::manifest::sha256_file(&path)?,
        stored: stored_choices(runtime, &ropts)?,
        path,
    };
    let backend = open(runtime, &ropts)?;
    let batch = opts.policy.batch;
    let shown = model.path.display().to_string();
    crate::serve::run(backend, model, opts, |addr| {
        eprintln!("lgss serve: listening on http://{addr} ({runtime}, {shown}, batch {batch})");
    })
}
