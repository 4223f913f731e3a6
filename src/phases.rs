//! Where the time of a run goes, phase by phase (`segment --profile`):
//! measured always (two clock reads a phase), shown on request.

use std::time::{Duration, Instant};

/// Accumulated wall time per named phase, in the order first seen.
#[derive(Debug, Default, Clone)]
pub struct Phases {
    entries: Vec<(&'static str, Duration, u64)>,
}

impl Phases {
    pub fn new() -> Phases {
        Phases::default()
    }

    /// Runs `f`, adding its wall time to `phase`.
    pub fn time<T>(&mut self, phase: &'static str, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        self.add(phase, t.elapsed());
        out
    }

    pub fn add(&mut self, phase: &'static str, d: Duration) {
        match self.entries.iter_mut().find(|e| e.0 == phase) {
            Some(e) => {
                e.1 += d;
                e.2 += 1;
            }
            None => self.entries.push((phase, d, 1)),
        }
    }

    /// Adds every phase of `other` (e.g. another thread's).
    pub fn merge(&mut self, other: &Phases) {
        for &(name, d, n) in &other.entries {
            match self.entries.iter_mut().find(|e| e.0 == name) {
                Some(e) => {
                    e.1 += d;
                    e.2 += n;
                }
                None => self.entries.push((name, d, n)),
            }
        }
    }

    pub fn total(&self) -> Duration {
        self.entries.iter().map(|e| e.1).sum()
    }

    /// `{phase: seconds}` for JSON summaries.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.entries
                .iter()
                .map(|&(name, d, _)| (name.to_string(), serde_json::json!(d.as_secs_f64())))
                .collect(),
        )
    }

    /// A table: seconds, share of the phases' sum and of `wall`, count.
    pub fn table(&self, wall: Duration) -> String {
        let sum = self.total().as_secs_f64().max(f64::MIN_POSITIVE);
        let mut out = format!(
            "{:<24} {:>10} {:>7} {:>8}\n",
            "phase", "seconds", "share", "times"
        );
        for &(name, d, n) in &self.entries {
            out += &format!(
                "{name:<24} {:>10.3} {:>6.1}% {n:>8}\n",
                d.as_secs_f64(),
                100.0 * d.as_secs_f64() / sum
            );
        }
        out += &format!(
            "{:<24} {:>10.3} {:>6.1}%  (wall {:.3} s: the rest is outside these phases)\n",
            "sum",
            sum,
            100.0 * sum / wall.as_secs_f64().max(f64::MIN_POSITIVE),
            wall.as_secs_f64()
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_accumulate_in_first_seen_order() {
        let mut p = Phases::new();
        p.add("read", Duration::from_millis(30));
        p.add("model", Duration::from_millis(50));
        p.add("read", Duration::from_millis(20));
        p.add("model", Duration::from_millis(10));
        p.add("write", Duration::from_millis(5));
        assert_eq!(
            p.entries,
            vec![
                ("read", Duration::from_millis(50), 2),
                ("model", Duration::from_millis(60), 2),
                ("write", Duration::from_millis(5), 1),
            ]
        );
        assert_eq!(p.total(), Duration::from_millis(115));
        let j = p.to_json();
        assert_eq!(j["model"].as_f64(), Some(0.06));
        assert_eq!(p.time("read", || 7), 7);
        assert_eq!(p.entries[0].2, 3);
        let mut q = Phases::new();
        q.add("plot", Duration::from_millis(1));
        q.add("model", Duration::from_millis(2));
        q.merge(&p);
        assert_eq!(q.entries[0], ("plot", Duration::from_millis(1), 1));
        assert_eq!(q.entries[1].0, "model");
        assert_eq!(q.entries[1].1, Duration::from_millis(62));
        assert_eq!(q.entries[1].2, 3);
        assert_eq!(q.entries.len(), 4);
    }
}
