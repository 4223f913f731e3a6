//! What `GET /metrics` exposes, in Prometheus' text format.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route (`/v1/segment`, …; `other` for unknown paths, so a scan of
    /// random paths cannot grow the label set).
    pub route: &'static str,
    pub status: u16,
}

pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Seconds from the request's arrival to its response.
    pub latency: Histogram,
    /// Movies waiting for the runtime thread.
    pub queue_depth: Gauge,
    /// Sequences per runtime run (up to `--batch`).
    pub batch_sequences: Histogram,
    /// Windows run; `rate(lgss_windows_total[1m])` is windows per second.
    pub windows: Counter,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("lgss");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        // 1 ms .. ~65 s.
        let latency = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        registry.register(
            "request_duration_seconds",
            "Time to answer a request",
            latency.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Movies queued for the runtime",
            queue_depth.clone(),
        );
        // 1 .. 4096 sequences.
        let batch_sequences = Histogram::new(exponential_buckets(1.0, 2.0, 13));
        registry.register(
            "batch_sequences",
            "Sequences of windows per runtime run",
            batch_sequences.clone(),
        );
        let windows = Counter::default();
        registry.register("windows", "Windows run by the model", windows.clone());
        Metrics {
            registry,
            requests,
            latency,
            queue_depth,
            batch_sequences,
            windows,
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
