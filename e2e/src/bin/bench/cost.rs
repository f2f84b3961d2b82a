//! What a phase cost: CPU seconds of each process (from `/proc/<pid>/stat`) and the
//! requests the apiserver served (its own `apiserver_request_total`), so the table
//! shows where the time went, not only how long it took.

use std::collections::BTreeMap;
use std::path::Path;

/// Processes whose CPU time is counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Process {
    Apiserver,
    Etcd,
    Operator,
    Bench,
}

#[derive(Clone, Debug, Default)]
pub struct Cost {
    cpu_seconds: BTreeMap<Process, f64>,
    /// The whole machine's CPU seconds (all CPUs), from `/proc/stat`.
    machine: MachineCpu,
    /// `VERB resource[/subresource]` -> requests.
    requests: BTreeMap<String, f64>,
}

/// CPU seconds (user + system) of a process so far; `None` if it is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// The whole machine's CPU time by kind, summed over all CPUs, in seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MachineCpu {
    /// user, nice, system, irq and softirq.
    busy: f64,
    /// idle and iowait.
    idle: f64,
    /// Runnable, but the hypervisor ran something else.
    steal: f64,
}

/// The aggregate `cpu` line of `/proc/stat` (`None` if it is not there).
fn machine_cpu(proc_stat: &str) -> Option<MachineCpu> {
    let line = proc_stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|t| t.parse().unwrap_or(0.0))
        .collect();
    let tick = |i: usize| ticks.get(i).copied().unwrap_or(0.0) / clock_ticks_per_second();
    Some(MachineCpu {
        busy: tick(0) + tick(1) + tick(2) + tick(5) + tick(6),
        idle: tick(3) + tick(4),
        steal: tick(7),
    })
}

/// The pid of a control-plane component started by `e2e/cluster.sh` (`$E2E_DIR/pids`).
fn component_pid(name: &str) -> Option<u32> {
    let dir = std::env::var_os("E2E_DIR")?;
    std::fs::read_to_string(Path::new(&dir).join("pids").join(name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The value of label `name` in a Prometheus sample's `{...}` (empty if absent).
pub fn label_value(labels: &str, name: &str) -> String {
    labels
        .split_once(&format!("{name}=\""))
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v.to_string())
        .unwrap_or_default()
}

/// Sums `apiserver_request_total` by verb and resource (+ subresource).
pub fn requests_by_verb(metrics: &str) -> BTreeMap<String, f64> {
    let mut sums = BTreeMap::new();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("apiserver_request_total{"))
    {
        let Some((labels, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let label = |name: &str| label_value(labels, name);
        let resource = match label("subresource").as_str() {
            "" => label("resource"),
            sub => format!("{}/{sub}", label("resource")),
        };
        *sums
            .entry(format!("{} {resource}", label("verb")))
            .or_insert(0.0) += value.parse::<f64>().unwrap_or(0.0);
    }
    sums
}

impl Cost {
    /// Now: CPU of the control plane, the operator (if any) and the benchmark, and
    /// the apiserver's request counters.
    pub fn now(operator_pid: Option<u32>) -> Cost {
        let mut cpu = BTreeMap::new();
        let pids = [
            (Process::Apiserver, component_pid("kube-apiserver")),
            (Process::Etcd, component_pid("etcd")),
            (Process::Operator, operator_pid),
            (Process::Bench, Some(std::process::id())),
        ];
        for (process, pid) in pids {
            if let Some(seconds) = pid.and_then(cpu_seconds) {
                cpu.insert(process, seconds);
            }
        }
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| machine_cpu(&text))
            .unwrap_or_default();
        let metrics = connectors_e2e::kubectl(["get", "--raw", "/metrics"]);
        Cost {
            cpu_seconds: cpu,
            machine,
            requests: requests_by_verb(&String::from_utf8_lossy(&metrics.stdout)),
        }
    }

    /// What was spent between `earlier` and this snapshot.
    pub fn since(&self, earlier: &Cost) -> Cost {
        Cost {
            cpu_seconds: Self::minus(&self.cpu_seconds, &earlier.cpu_seconds),
            machine: MachineCpu {
                busy: self.machine.busy - earlier.machine.busy,
                idle: self.machine.idle - earlier.machine.idle,
                steal: self.machine.steal - earlier.machine.steal,
            },
            requests: Self::minus(&self.requests, &earlier.requests),
        }
    }

    /// `now - then` per key, dropping what did not grow.
    fn minus<K: Ord + Clone>(now: &BTreeMap<K, f64>, then: &BTreeMap<K, f64>) -> BTreeMap<K, f64> {
        now.iter()
            .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0.0)))
            .filter(|(_, v)| *v > 0.0)
            .collect()
    }

    /// Requests served for one `VERB resource[/subresource]`.
    pub fn requests(&self, key: &str) -> f64 {
        self.requests.get(key).copied().unwrap_or(0.0)
    }

    /// `apiserver 12.3 / etcd 4.5 / operator 6.7 / bench 1.2`
    pub fn cpu_summary(&self) -> String {
        let get = |p| self.cpu_seconds.get(&p).copied().unwrap_or(0.0);
        format!(
            "{:.1} / {:.1} / {:.1} / {:.1}",
            get(Process::Apiserver),
            get(Process::Etcd),
            get(Process::Operator),
            get(Process::Bench)
        )
    }

    /// `busy 70.1 / idle 3.2 / steal 0.0`: the whole machine, all CPUs. Steal time
    /// tells a phase slowed by the hypervisor from one slowed by its own work.
    pub fn machine_summary(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.1}",
            self.machine.busy, self.machine.idle, self.machine.steal
        )
    }

    /// The apiserver requests of a phase, most frequent first (watch and discovery
    /// noise below `min` left out).
    pub fn request_lines(&self, min: f64) -> Vec<String> {
        let mut entries: Vec<(&String, &f64)> =
            self.requests.iter().filter(|(_, n)| **n >= min).collect();
        entries.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        entries
            .into_iter()
            .map(|(k, n)| format!("{k} {n:.0}"))
            .collect()
    }
}

/// Requests per second below which the control plane counts as idle (its own lease
/// renewals and the bench's samples stay well under it).
const QUIET_REQUESTS_PER_SECOND: f64 = 2.0;
const QUIET_SAMPLE: std::time::Duration = std::time::Duration::from_secs(5);

/// Requests the apiserver served so far, watches left out (one per watch, however long).
fn requests_served() -> f64 {
    Cost::now(None)
        .requests
        .iter()
        .filter(|(key, _)| !key.starts_with("WATCH"))
        .map(|(_, n)| n)
        .sum()
}

/// Waits until the apiserver serves fewer than `QUIET_REQUESTS_PER_SECOND` in two
/// consecutive samples, at most `limit`; returns the wait and whether it got quiet.
/// A timed phase must not pay for the previous phase's clean-up, which
/// kube-controller-manager works off at its client rate (10,000 deleted Services:
/// about 8 minutes of `DELETE endpoints` at its default 20 per second, under a minute
/// at the bench's 200).
pub fn wait_until_quiet(limit: std::time::Duration) -> (std::time::Duration, bool) {
    let started = std::time::Instant::now();
    let mut served = requests_served();
    let mut quiet_samples = 0;
    while started.elapsed() < limit {
        std::thread::sleep(QUIET_SAMPLE);
        let now = requests_served();
        let rate = (now - served) / QUIET_SAMPLE.as_secs_f64();
        served = now;
        quiet_samples = if rate < QUIET_REQUESTS_PER_SECOND {
            quiet_samples + 1
        } else {
            0
        };
        if quiet_samples >= 2 {
            return (started.elapsed(), true);
        }
    }
    (started.elapsed(), false)
}

/// `KEY N, KEY N, ...` for a report row, or `none` when there is nothing to count.
pub fn counts_line<K: std::fmt::Display, V: std::fmt::Display>(
    counts: impl IntoIterator<Item = (K, V)>,
    none: &str,
) -> String {
    let line = counts
        .into_iter()
        .map(|(key, n)| format!("{key} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    if line.is_empty() {
        none.to_string()
    } else {
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_requests_by_verb_and_resource() {
        let text = r#"# HELP apiserver_request_total x
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 3
apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="secrets",scope="resource",subresource="",verb="GET",version="v1"} 2
apiserver_request_total{code="200",component="apiserver",dry_run="",group="connectors.alauda.io",resource="connectors",scope="resource",subresource="status",verb="APPLY",version="v1alpha1"} 7
apiserver_request_duration_seconds_bucket{verb="GET",le="1"} 99
"#;
        let sums = requests_by_verb(text);
        assert_eq!(sums.get("GET secrets"), Some(&5.0));
        assert_eq!(sums.get("APPLY connectors/status"), Some(&7.0));
        assert_eq!(sums.len(), 2);
    }

    #[test]
    fn machine_cpu_sums_busy_and_idle_kinds_and_keeps_steal_apart() {
        let ticks = clock_ticks_per_second();
        let text = "cpu  100 10 50 700 20 5 15 30 0 0\ncpu0 50 5 25 350 10 2 7 15 0 0\n";
        let cpu = machine_cpu(text).map(|c| {
            let round = |seconds: f64| (seconds * ticks).round();
            (round(c.busy), round(c.idle), round(c.steal))
        });
        assert_eq!(cpu, Some((180.0, 720.0, 30.0)));
        assert_eq!(machine_cpu("intr 1 2 3\n"), None);
    }

    #[test]
    fn cpu_of_this_process_is_readable() {
        let seconds = cpu_seconds(std::process::id());
        assert!(seconds.is_some_and(|s| s >= 0.0), "{seconds:?}");
    }

    #[test]
    fn counts_line_lists_each_count_or_says_none() {
        let counts = std::collections::BTreeMap::from([("GET secrets", 3), ("PATCH x", 1)]);
        assert_eq!(counts_line(&counts, "0"), "GET secrets 3, PATCH x 1");
        let empty: [(&str, u64); 0] = [];
        assert_eq!(counts_line(empty, "none"), "none");
    }
}
