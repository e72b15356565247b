//! The `process_*` metrics every Go server exports (client_golang's process collector), read from `/proc` at each
//! scrape: CPU seconds, resident and virtual memory, start time, open and maximum file descriptors. Dashboards and
//! alerts written for kube-apiserver and sample-apiserver read these names. On a system without `/proc` (not
//! Linux) they are absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux's `USER_HZ`: the unit of `/proc`'s CPU times (client_golang's procfs assumes it too).
const USER_HZ: f64 = 100.0;

/// One reading of the process's figures.
#[derive(Debug, Default, PartialEq)]
struct Process {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    start_time_seconds: f64,
    open_fds: f64,
    max_fds: f64,
}

impl Process {
    fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count();
        let mut process = parse(&stat, &status, &boot, &limits)?;
        process.open_fds = open_fds as f64;
        Some(process)
    }
}

/// The figures in `/proc/self/stat`, `/proc/self/status`, `/proc/stat` and `/proc/self/limits`.
fn parse(stat: &str, status: &str, boot: &str, limits: &str) -> Option<Process> {
    // The fields after the command name (which may hold spaces and parentheses): the state is field 3.
    let fields: Vec<&str> = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let kib = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse::<f64>().ok().map(|k| k * 1024.0)
    };
    let boot_time = boot.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse::<f64>().ok()?;
    let max_fds = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?
        .split_whitespace()
        .next()
        .map(|soft| soft.parse::<f64>().unwrap_or(f64::INFINITY))?;
    Some(Process {
        cpu_seconds: (field(14)? + field(15)?) / USER_HZ,
        resident_bytes: kib("VmRSS:")?,
        virtual_bytes: kib("VmSize:")?,
        start_time_seconds: boot_time + field(22)? / USER_HZ,
        open_fds: 0.0,
        max_fds,
    })
}

/// The collector, registered once.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = Process::read() else { return Ok(()) };
        let cpu = ConstCounter::new(p.cpu_seconds);
        let help = "Total user and system CPU time spent in seconds.";
        cpu.encode(encoder.encode_descriptor("process_cpu_seconds", help, None, cpu.metric_type())?)?;
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes.", p.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes.", p.virtual_bytes),
            (
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                p.start_time_seconds,
            ),
            ("process_open_fds", "Number of open file descriptors.", p.open_fds),
            ("process_max_fds", "Maximum number of open file descriptors.", p.max_fds),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files() {
        let stat = "4242 (a (weird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 \
                    104857600 2000 18446744073709551615";
        let status = "Name:\tx\nVmSize:\t  102400 kB\nVmRSS:\t    8000 kB\n";
        let boot = "cpu  1 2 3\nbtime 1700000000\nprocesses 5\n";
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max open files            1048576              1048576              files     \n";
        let p = parse(stat, status, boot, limits).unwrap();
        assert_eq!(
            p,
            Process {
                cpu_seconds: 3.0,
                resident_bytes: 8000.0 * 1024.0,
                virtual_bytes: 102400.0 * 1024.0,
                start_time_seconds: 1700000000.0 + 123.45,
                open_fds: 0.0,
                max_fds: 1048576.0,
            }
        );
        assert!(parse("garbage", status, boot, limits).is_none());
    }

    #[test]
    fn this_process() {
        let p = Process::read().unwrap();
        assert!(p.resident_bytes > 0.0 && p.open_fds >= 3.0 && p.max_fds >= p.open_fds, "{p:?}");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
        assert!(p.start_time_seconds <= now + 1.0 && p.start_time_seconds > now - 86400.0 * 365.0, "{p:?}");
    }
}
