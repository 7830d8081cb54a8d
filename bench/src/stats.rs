//! Latency samples and percentiles.

use std::io::BufRead;

use serde_json::json;

/// Latency samples in microseconds.
#[derive(Default, Debug, Clone)]
pub struct Samples {
    micros: Vec<u32>,
}

impl Samples {
    /// Adds one duration.
    pub fn push(&mut self, d: std::time::Duration) {
        self.micros
            .push(u32::try_from(d.as_micros()).unwrap_or(u32::MAX));
    }

    /// Moves every sample of `other` into `self`.
    pub fn merge(&mut self, other: Samples) {
        self.micros.extend(other.micros);
    }

    /// How many samples there are.
    pub fn len(&self) -> usize {
        self.micros.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.micros.is_empty()
    }

    /// `{"p50_ms", "p99_ms", "max_ms"}` of the samples (nulls when there are none).
    pub fn summary_ms(&mut self) -> serde_json::Value {
        self.micros.sort_unstable();
        let ms = |v: Option<u32>| v.map(|us| round3(f64::from(us) / 1000.0));
        json!({
            "p50_ms": ms(percentile(&self.micros, 50.0)),
            "p99_ms": ms(percentile(&self.micros, 99.0)),
            "max_ms": ms(self.micros.last().copied()),
        })
    }
}

/// The nearest-rank percentile `p` (0–100) of sorted `values`.
pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Rounds to three decimals (for readable JSON).
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Arguments of `percentiles`.
#[derive(clap::Args)]
pub struct PercentilesArgs {
    /// The column to read (1-based; whitespace-separated).
    #[arg(long, default_value_t = 1)]
    column: usize,
    /// Factor applied to every value (0.001 turns microseconds into milliseconds).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// Prefix of the output keys (`p50` gives `p50`, `p99`; `lat_` gives `lat_p50`, …).
    #[arg(long, default_value = "")]
    prefix: String,
}

/// Reads numbers from stdin and prints `{"count", "p50", "p99", "max", "mean"}`.
pub fn run_percentiles(args: PercentilesArgs) -> anyhow::Result<()> {
    let mut values = Vec::new();
    for line in std::io::stdin().lock().lines() {
        let line = line?;
        let Some(field) = line.split_whitespace().nth(args.column.saturating_sub(1)) else {
            continue;
        };
        if let Ok(v) = field.parse::<f64>() {
            values.push(v * args.scale);
        }
    }
    values.sort_by(f64::total_cmp);
    let mean = if values.is_empty() {
        None
    } else {
        Some(round3(values.iter().sum::<f64>() / values.len() as f64))
    };
    let p = &args.prefix;
    let out = json!({
        format!("{p}count"): values.len(),
        format!("{p}p50"): percentile(&values, 50.0).map(round3),
        format!("{p}p99"): percentile(&values, 99.0).map(round3),
        format!("{p}max"): values.last().copied().map(round3),
        format!("{p}mean"): mean,
    });
    println!("{out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), Some(50));
        assert_eq!(percentile(&v, 99.0), Some(99));
        assert_eq!(percentile(&v, 100.0), Some(100));
        assert_eq!(percentile(&[7u32], 99.0), Some(7));
        assert_eq!(percentile::<u32>(&[], 50.0), None);
    }
}
