//! What the benchmark binaries share: percentiles of latency samples and the machine's CPU
//! accounting over a run, so a figure is printed with how busy the machine was and how much
//! CPU time the hypervisor took away (steal), which is what moves tail latencies on a VM.

/// Latency samples in milliseconds, sorted ascending.
pub type Latencies = Vec<f64>;

/// Sorts `samples` (milliseconds) into [`Latencies`].
pub fn sorted(mut samples: Vec<f64>) -> Latencies {
    samples.sort_by(f64::total_cmp);
    samples
}

/// The nearest-rank quantile `q` (0..=1) of sorted samples; NaN when there are none.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

/// p50, p95 and p99.
pub fn percentiles(sorted: &[f64]) -> [f64; 3] {
    [0.50, 0.95, 0.99].map(|q| quantile(sorted, q))
}

/// One line: label, sample count, p50/p95/p99.
pub fn print_row(label: &str, sorted: &[f64]) {
    let [p50, p95, p99] = percentiles(sorted);
    println!(
        "{label:<44} n={:<5} p50 {p50:7.2} ms  p95 {p95:7.2} ms  p99 {p99:7.2} ms",
        sorted.len()
    );
}

/// Jiffies of all CPUs from the first line of /proc/stat: (busy, steal, total).
fn cpu_jiffies(stat: &str) -> Option<(u64, u64, u64)> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let (idle, iowait, steal) = (*v.get(3)?, *v.get(4)?, *v.get(7)?);
    let total: u64 = v.iter().take(8).sum();
    Some((total - idle - iowait - steal, steal, total))
}

/// CPU accounting from construction to [`CpuWindow::report`].
pub struct CpuWindow(Option<(u64, u64, u64)>);

impl CpuWindow {
    pub fn start() -> Self {
        Self(read_stat())
    }

    /// "busy B % steal S %" of all CPUs' time since `start`, or why it is unknown.
    pub fn report(&self) -> String {
        match (self.0, read_stat()) {
            (Some(a), Some(b)) => describe(a, b),
            _ => "CPU accounting unavailable (no /proc/stat)".into(),
        }
    }
}

fn read_stat() -> Option<(u64, u64, u64)> {
    cpu_jiffies(&std::fs::read_to_string("/proc/stat").ok()?)
}

fn describe(a: (u64, u64, u64), b: (u64, u64, u64)) -> String {
    let total = b.2.saturating_sub(a.2).max(1) as f64;
    let pct = |x: u64, y: u64| 100.0 * y.saturating_sub(x) as f64 / total;
    format!(
        "machine CPU busy {:.0} %, hypervisor steal {:.1} %",
        pct(a.0, b.0),
        pct(a.1, b.1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let s = sorted((1..=100).rev().map(f64::from).collect());
        assert_eq!(percentiles(&s), [51.0, 95.0, 99.0]);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    #[test]
    fn cpu_accounting_separates_busy_idle_and_steal() {
        let before = "cpu  100 0 50 800 10 0 0 40 0 0\ncpu0 1 2 3\n";
        let after = "cpu  160 0 70 880 10 0 10 70 0 0\n";
        let (a, b) = (cpu_jiffies(before).unwrap(), cpu_jiffies(after).unwrap());
        assert_eq!(a, (150, 40, 1000));
        assert_eq!(b, (240, 70, 1200));
        assert_eq!(
            describe(a, b),
            "machine CPU busy 45 %, hypervisor steal 15.0 %"
        );
        assert_eq!(cpu_jiffies("intr 1 2 3"), None);
    }
}
