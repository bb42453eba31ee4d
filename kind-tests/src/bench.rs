//! What the benchmark binaries share: storing their objects, waiting for what they watch,
//! percentiles of latency samples and the machine's CPU accounting over a run, so a figure is
//! printed with how busy the machine was and how much CPU time the hypervisor took away
//! (steal), which is what moves tail latencies on a VM.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};

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

/// Milliseconds from each name's start to when it was seen, sorted.
pub fn latencies(started: &HashMap<String, Instant>, seen: &HashMap<String, Instant>) -> Latencies {
    sorted(
        started
            .iter()
            .filter_map(|(name, t0)| seen.get(name).map(|t1| (*t1 - *t0).as_secs_f64() * 1000.0))
            .collect(),
    )
}

/// Waits until `n` names are seen, two minutes at most (the figures then count the ones seen).
pub async fn wait_all(seen: &Mutex<HashMap<String, Instant>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while seen.lock().expect("lock").len() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs `work` `in_flight` at a time, printing the rate every 10,000 `what` to stderr; the
/// first error ends it.
pub async fn store_all<S, F>(work: S, in_flight: usize, what: &str) -> anyhow::Result<()>
where
    S: Stream<Item = F>,
    F: Future<Output = anyhow::Result<()>>,
{
    let started = Instant::now();
    let mut done = std::pin::pin!(work.buffer_unordered(in_flight));
    let mut n = 0usize;
    while let Some(r) = done.next().await {
        r?;
        n += 1;
        if n.is_multiple_of(10_000) {
            eprintln!(
                "  {n} {what} stored ({:.0}/s)",
                n as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    Ok(())
}

/// Resident memory of process `pid` in MB (its VmRSS), 0 when it cannot be read.
pub fn rss_mb(pid: u32) -> f64 {
    status_mb(pid, "VmRSS:")
}

/// The process's peak RSS in MB (since it started, or since [`reset_peak`]).
pub fn peak_mb(pid: u32) -> f64 {
    status_mb(pid, "VmHWM:")
}

/// Starts the process's peak RSS afresh from its current RSS.
pub fn reset_peak(pid: u32) -> std::io::Result<()> {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5")
}

fn status_mb(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
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

/// CPU accounting from construction to [`CpuWindow::report`]: the machine's, and each
/// program's share of it.
pub struct CpuWindow(Option<(u64, u64, u64)>, HashMap<u32, (String, u64)>);

impl CpuWindow {
    pub fn start() -> Self {
        Self(read_stat(), process_ticks())
    }

    /// "busy B % steal S %" of all CPUs' time since `start`, or why it is unknown.
    pub fn report(&self) -> String {
        match (self.0, read_stat()) {
            (Some(a), Some(b)) => describe(a, b),
            _ => "CPU accounting unavailable (no /proc/stat)".into(),
        }
    }

    /// The programs that used the most CPU since `start`, each as a share of all CPUs' time:
    /// "kube-apiserver 41 %, etcd 20 %, ...". Empty without /proc.
    pub fn top_programs(&self) -> String {
        let (Some(a), Some(b)) = (self.0, read_stat()) else {
            return String::new();
        };
        shares(&self.1, &process_ticks(), b.2.saturating_sub(a.2).max(1), 5)
    }
}

/// CPU ticks (user + system) of every process, by pid, with its program name.
fn process_ticks() -> HashMap<u32, (String, u64)> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return HashMap::new();
    };
    dir.filter_map(|entry| {
        let pid: u32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some((pid, process_stat(&stat)?))
    })
    .collect()
}

/// Program name and user + system ticks from one /proc/PID/stat.
fn process_stat(stat: &str) -> Option<(String, u64)> {
    let name = stat.get(stat.find('(')? + 1..stat.rfind(')')?)?;
    // After the name: state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let ticks = rest.get(11)?.parse::<u64>().ok()? + rest.get(12)?.parse::<u64>().ok()?;
    Some((name.to_string(), ticks))
}

/// The `top` programs by ticks used between two snapshots, as shares of `total` ticks of all
/// CPUs (the same clock: /proc/stat and /proc/PID/stat both count USER_HZ).
fn shares(
    before: &HashMap<u32, (String, u64)>,
    after: &HashMap<u32, (String, u64)>,
    total: u64,
    top: usize,
) -> String {
    let mut used: HashMap<&str, u64> = HashMap::new();
    for (pid, (name, ticks)) in after {
        // By pid only: a kernel worker's name changes with the work it does.
        let earlier = before.get(pid).map_or(0, |(_, t)| *t);
        *used.entry(name).or_default() += ticks.saturating_sub(earlier);
    }
    let mut used: Vec<(&str, u64)> = used.into_iter().filter(|(_, t)| *t > 0).collect();
    used.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    used.iter()
        .take(top)
        .map(|(name, ticks)| format!("{name} {:.0} %", 100.0 * *ticks as f64 / total as f64))
        .collect::<Vec<_>>()
        .join(", ")
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

    #[test]
    fn each_programs_share_counts_only_its_ticks_in_the_window() {
        let stat = "42 (kube-apiserver) S 1 42 42 0 -1 4194560 100 0 0 0 30 12 0 0 20 0 9 0";
        assert_eq!(process_stat(stat), Some(("kube-apiserver".into(), 42)));
        let odd = "7 (a) b (c)) R 1 1 1 0 -1 0 0 0 0 0 5 5 0 0 20 0 1 0";
        assert_eq!(process_stat(odd), Some(("a) b (c)".into(), 10)));
        assert_eq!(process_stat("garbage"), None);
        let before = HashMap::from([
            (1, ("etcd".to_string(), 100)),
            (2, ("old".to_string(), 50)),
            (3, ("api".to_string(), 10)),
        ]);
        let after = HashMap::from([
            (1, ("etcd".to_string(), 120)),
            (3, ("api".to_string(), 70)),
            // A new process: all its ticks count.
            (4, ("operator".to_string(), 30)),
            // A kernel worker that renamed itself: counted under its new name.
            (2, ("old-renamed".to_string(), 60)),
        ]);
        assert_eq!(
            shares(&before, &after, 200, 3),
            "api 30 %, operator 15 %, etcd 10 %"
        );
        assert_eq!(
            shares(&before, &after, 200, 5),
            "api 30 %, operator 15 %, etcd 10 %, old-renamed 5 %"
        );
    }
}
