//! `bench-controller` (feature `testing`): backup and restore throughput and peak RSS per engine, beside the limit:
//! the database's own export read raw into nothing, in the same run. Run it in release mode:
//!
//! ```sh
//! cargo run --release -p backup-controller --features testing --bin bench-controller -- 1000000 250000
//! ```
//!
//! `--queue N` (after `cargo build --release -p backup-controller --features testing --bins`) instead runs the
//! controller binary with N backups at once against one VictoriaMetrics and reports its peak RSS, the connections it
//! held and the time (see `queue.rs`).
//!
//! Arguments: dataset sizes in samples (default 1000000); `BENCH_ONLY=Prometheus` (etc.) runs one engine;
//! `BENCH_DATASET=scraped` loads values as a scrape leaves them instead of the tests' edge values; `BENCH_PIN=1` gives
//! the database and the controller one core each; `BENCH_ROUNDS` (default 5) sets the rounds per figure;
//! `BENCH_DEST=s3` writes the backups to an `s3s-fs` server on loopback (`BENCH_DEST=s3-encrypted`: encrypted)
//! instead of a local directory (the `dest` column says which), `BENCH_S3_NICE=1` with that server at the lowest CPU
//! priority (a remote server would cost these cores nothing); `BENCH_S3_ENDPOINT` (with `BENCH_S3_ACCESS_KEY_FILE`,
//! `BENCH_S3_SECRET_KEY_FILE` and, for its CPU figure, `BENCH_S3_PID`) uses an S3 server already running, with the
//! bucket `tsdb-backups`, instead (`hack/bench-s3-garage.sh` runs Garage so). Each
//! engine and size runs in a fresh child process; peak RSS is its `VmHWM`, reset (via `/proc/self/clear_refs`)
//! before each measured step, with the RSS before the step (the loaded harness) beside it.

use std::time::{Duration, Instant};

use anyhow::Context;
use backup_apis::backup::BackupSource;
use backup_apis::database::{DatabaseEndpoint, DatabaseType};
use backup_controller::destination::Destination;
use backup_controller::destination::local::LocalDir;
use backup_controller::destination::locations::{Location, Locations};
use backup_controller::engine;
use backup_controller::format::BackupWriter;
use backup_controller::http::{Body, Http, url};
use backup_controller::testing::dataset::{FloatSeries, float_series, influx_lines, scraped_series};
use backup_controller::testing::influx::Influx;
use backup_controller::testing::prometheus::Prometheus;
use backup_controller::testing::s3::{self, S3Server};
use backup_controller::testing::victoria::Victoria;
use bytes::Bytes;

mod queue;

fn main() -> anyhow::Result<()> {
    backup_controller::allocator::keep_freed_memory();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, n] = args.as_slice()
        && flag == "--queue"
    {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        println!(
            "| backups queued | samples each | all done in | samples/s | controller peak RSS | RSS after | most \
             connections to the database | most Running at once |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        println!("{}", runtime.block_on(queue::queue(n.parse()?))?);
        return Ok(());
    }
    // A child run: one engine and size, in a fresh process so its peak RSS is its own.
    if let [flag, kind, n] = args.as_slice()
        && flag == "--one"
    {
        let kind = backup_controller::plugin::parse_type(kind)?;
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        println!("{}", runtime.block_on(bench(kind, n.parse()?))?);
        return Ok(());
    }
    let sizes: Vec<u64> = args.iter().map(|a| a.parse()).collect::<Result<_, _>>()?;
    let sizes = if sizes.is_empty() { vec![1_000_000] } else { sizes };
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    println!(
        "| engine | dest | samples | limit: raw export (samples/s) | backup (samples/s) | % of limit \
         | backup CPU ns/sample (database + controller) | backup peak RSS (before) \
         | file | restore (samples/s) | restore peak RSS |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        for kind in ["VictoriaMetrics", "Prometheus", "InfluxDB"] {
            if !only.is_empty() && !kind.eq_ignore_ascii_case(&only) {
                continue;
            }
            let exe = std::env::current_exe()?;
            let mut command = match pinned() {
                // The database on CPU 0, this process (the controller's side) on CPU 1.
                true => {
                    let mut taskset = std::process::Command::new("taskset");
                    taskset.args(["-c", "1"]).arg(exe).env("TSDB_TEST_CPUS", "0");
                    taskset
                }
                false => std::process::Command::new(exe),
            };
            let out = command.args(["--one", kind, &n.to_string()]).stderr(std::process::Stdio::inherit()).output()?;
            anyhow::ensure!(out.status.success(), "{kind} {n}: {}", out.status);
            print!("{}", String::from_utf8_lossy(&out.stdout));
        }
    }
    Ok(())
}

/// A database of `kind` holding about `n` samples, and a fresh one to restore into.
enum Pair {
    Victoria(Victoria, Victoria),
    Prometheus(Prometheus, Prometheus),
    Influx(Influx, Influx),
}

async fn bench(kind: DatabaseType, n: u64) -> anyhow::Result<String> {
    let http = &Http::plain(Duration::from_secs(300))?;
    let per_series = 1000usize;
    let series = (n as usize).div_ceil(per_series);
    let pair = match kind {
        DatabaseType::VictoriaMetrics => {
            let source = Victoria::start().await;
            for chunk in (0..series).step_by(100) {
                source.load(&floats(chunk as u64, 100.min(series - chunk), per_series, false)).await;
            }
            Pair::Victoria(source, Victoria::start().await)
        }
        DatabaseType::Prometheus => {
            let source = Prometheus::start().await;
            for chunk in (0..series).step_by(100) {
                source.load(&floats(chunk as u64, 100.min(series - chunk), per_series, true)).await;
            }
            Pair::Prometheus(source, Prometheus::start().await)
        }
        DatabaseType::InfluxDB => {
            let source = Influx::start().await;
            // About 2.2 field values per point.
            for chunk in (0..series).step_by(100) {
                let (lines, _) = influx_lines(chunk as u64, chunk, 100.min(series - chunk), per_series * 10 / 22);
                source.load("bench", &lines).await;
            }
            Pair::Influx(source, Influx::start().await)
        }
    };
    let (source_url, target_url, database) = match &pair {
        Pair::Victoria(s, t) => (s.url.clone(), t.url.clone(), None),
        Pair::Prometheus(s, t) => (s.url.clone(), t.url.clone(), None),
        Pair::Influx(s, t) => (s.url.clone(), t.url.clone(), Some("bench".to_string())),
    };
    let source =
        BackupSource { endpoint: DatabaseEndpoint::new(kind, source_url.clone(), database.clone()), selector: None };

    // Make what was just written visible (VictoriaMetrics) and warm the caches: one untimed read.
    if kind == DatabaseType::VictoriaMetrics {
        http.get(&url(&source_url, "/internal/force_flush", &[])).await?;
    }
    raw_export(http, kind, &source_url).await?;
    let db_pid = pair.source_pid();

    // Rounds alternate the limit (the same export endpoints, read raw and thrown away) and a backup; each figure is
    // the median of its rounds, so one disturbed round on a shared machine does not decide the ratio.
    let tmp = tempfile::tempdir()?;
    let (dest, keys, _s3_server, s3_pid) = destination(&tmp).await?;
    let key = keys.as_ref().map(|k| &k.current);
    let dest: &dyn Destination = dest.as_ref();
    let baseline = rss_kib("VmRSS:");
    let (mut raws, mut backups, mut commits, mut cpus) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut raw_cpu, mut s3_cpu) = (0.0, 0.0);
    let mut last = None;
    reset_peak_rss();
    for round in 0..rounds() {
        let db_cpu = cpu_seconds(db_pid);
        let started = Instant::now();
        raw_export(http, kind, &source_url).await?;
        raws.push(started.elapsed());
        raw_cpu += cpu_seconds(db_pid) - db_cpu;

        let name = format!("bench/b.{round}.tsdb");
        let (db_cpu, own_cpu, s3_before) =
            (cpu_seconds(db_pid), cpu_seconds(None), s3_pid.map(|p| cpu_seconds(Some(p))));
        let started = Instant::now();
        let mut writer =
            BackupWriter::new(dest.create(&name).await?, engine::source_of(&source, None))?.encrypt_with(key)?;
        engine::backup(http, &source, &mut writer).await?;
        let committing = Instant::now();
        let (header, size) = writer.finish().await?;
        commits.push(committing.elapsed());
        backups.push(started.elapsed());
        cpus.push((cpu_seconds(db_pid) - db_cpu, cpu_seconds(None) - own_cpu));
        s3_cpu += s3_pid.zip(s3_before).map_or(0.0, |(p, before)| cpu_seconds(Some(p)) - before);
        if let Some((previous, _, _)) = last.replace((name, header, size)) {
            dest.delete(&previous).await?;
        }
    }
    let backup_rss = peak_rss_kib();
    let (name, header, size) = last.context("no rounds")?;
    let (raw, backup) = (median(&mut raws), median(&mut backups));
    let per_sample = |seconds: f64| seconds * 1e9 / header.samples as f64 / cpus.len() as f64;
    let cpu_db = per_sample(cpus.iter().map(|c| c.0).sum());
    let cpu_own = per_sample(cpus.iter().map(|c| c.1).sum());
    eprintln!("{kind:?} {n}: database CPU while read raw: {:.0} ns/sample", per_sample(raw_cpu));
    // The end of a backup: the last bytes, the header, then the file made durable (local) or the upload completed.
    eprintln!(
        "{kind:?} {n}: commit, included in the backup's time: {:.1} ms",
        median(&mut commits).as_secs_f64() * 1e3
    );
    if s3_pid.is_some() {
        eprintln!("{kind:?} {n}: S3 server CPU during the backups: {:.0} ns/sample", per_sample(s3_cpu));
    }

    let target = DatabaseEndpoint::new(kind, target_url, database);
    reset_peak_rss();
    let started = Instant::now();
    let restored =
        backup_controller::restore::run(http, dest, keys.as_deref(), &name, &target, Default::default()).await?;
    let restore = started.elapsed();
    let restore_rss = peak_rss_kib();
    let expected = header.samples - restored.dropped;
    anyhow::ensure!(restored.samples == expected, "restored {} of {expected}", restored.samples);

    let rate = |d: Duration| header.samples as f64 / d.as_secs_f64();
    Ok(format!(
        "| {kind:?} | {} | {} | {:.0} | {:.0} | {:.0}% | {cpu_db:.0} + {cpu_own:.0} | {} MiB ({} MiB) | {:.1} MiB | {:.0} | {} MiB |",
        std::env::var("BENCH_DEST").unwrap_or_else(|_| "local".into()),
        header.samples,
        rate(raw),
        rate(backup),
        100.0 * raw.as_secs_f64() / backup.as_secs_f64(),
        backup_rss / 1024,
        baseline / 1024,
        size as f64 / (1 << 20) as f64,
        rate(restore),
        restore_rss / 1024,
    ))
}

/// Where the benchmark's backups go (`BENCH_DEST`): a local directory, or a bucket, encrypted or not, of an
/// `s3s-fs` started here (kept running by the returned server) or of the server at `BENCH_S3_ENDPOINT`; with the S3
/// server's process id, for its CPU.
async fn destination(
    tmp: &tempfile::TempDir,
) -> anyhow::Result<(
    std::sync::Arc<dyn Destination>,
    Option<std::sync::Arc<backup_controller::format::crypt::Keys>>,
    Option<S3Server>,
    Option<u32>,
)> {
    let dest = std::env::var("BENCH_DEST").unwrap_or_default();
    if !dest.starts_with("s3") {
        return Ok((std::sync::Arc::new(LocalDir::new(tmp.path())), None, None, None));
    }
    let key = tmp.path().join("bench.key");
    std::fs::write(&key, [7u8; 32])?;
    let key = (dest == "s3-encrypted").then_some(key);
    let (spec, s3, pid) = match std::env::var("BENCH_S3_ENDPOINT") {
        Ok(endpoint) => {
            let file = |var: &str| std::env::var(var).with_context(|| format!("BENCH_S3_ENDPOINT needs {var}"));
            let (access, secret) = (file("BENCH_S3_ACCESS_KEY_FILE")?, file("BENCH_S3_SECRET_KEY_FILE")?);
            let spec = s3::location(&endpoint, access.as_ref(), secret.as_ref(), "bench", "bench", key);
            let pid = std::env::var("BENCH_S3_PID").ok().map(|p| p.parse()).transpose().context("BENCH_S3_PID")?;
            (spec, None, pid)
        }
        Err(_) => {
            let s3 = S3Server::start().await;
            let (spec, pid) = (s3.location("bench", "bench", key), s3.pid());
            (spec, Some(s3), pid)
        }
    };
    if std::env::var("BENCH_S3_NICE").is_ok_and(|n| n == "1") {
        pid.map(lowest_priority).transpose()?;
    }
    let connector = backup_controller::http::transport::Connector::new(Duration::from_secs(60))?;
    let file = backup_controller::destination::locations::LocationsFile { locations: vec![spec] };
    let locations = Locations::from_file(file, connector.default_transport(), Duration::from_secs(60))?;
    let Location { store, keys, .. } = locations.get("bench").map_err(anyhow::Error::msg)?.clone();
    Ok((store, keys, s3, pid))
}

/// Reads what a backup reads, without decoding it.
async fn raw_export(http: &Http, kind: DatabaseType, base: &str) -> anyhow::Result<u64> {
    let body = match kind {
        DatabaseType::VictoriaMetrics => {
            http.get(&url(base, "/api/v1/export", &[("match[]", r#"{__name__!=""}"#)])).await?
        }
        DatabaseType::Prometheus => {
            use prost::Message;
            let request = engine::remote::ReadRequest {
                queries: vec![engine::remote::Query {
                    start_timestamp_ms: i64::MIN,
                    end_timestamp_ms: i64::MAX,
                    matchers: vec![engine::remote::LabelMatcher {
                        r#type: 2,
                        name: "__name__".into(),
                        value: ".+".into(),
                    }],
                }],
                accepted_response_types: vec![engine::remote::STREAMED_XOR_CHUNKS],
            };
            let body = snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())?;
            http.send(
                ::http::Method::POST,
                &url(base, "/api/v1/read", &[]),
                &[(::http::header::CONTENT_ENCODING, "snappy")],
                Bytes::from(body),
            )
            .await?
        }
        DatabaseType::InfluxDB => {
            let mut total = 0;
            for m in ["cpu", "disk io", "weird,name", "mem=used"] {
                let q = format!("SELECT * FROM \"{m}\" GROUP BY *");
                let params =
                    [("db", "bench"), ("q", q.as_str()), ("epoch", "ns"), ("chunked", "true"), ("chunk_size", "10000")];
                total += drain(http.get(&url(base, "/query", &params)).await?).await?;
            }
            return Ok(total);
        }
    };
    drain(body).await
}

async fn drain(mut body: Body) -> anyhow::Result<u64> {
    let mut n = 0;
    while let Some(chunk) = body.chunk().await? {
        n += chunk.len() as u64;
    }
    Ok(n)
}

impl Pair {
    fn source_pid(&self) -> Option<u32> {
        match self {
            Pair::Victoria(s, _) => s.process.child.id(),
            Pair::Prometheus(s, _) => s.process.child.id(),
            Pair::Influx(s, _) => s.process.child.id(),
        }
    }
}

/// User plus system CPU time of a process (this one if `None`), from `/proc/<pid>/stat`.
fn cpu_seconds(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// The float dataset: `BENCH_DATASET=scraped` for values as a scrape leaves them, else the tests' edge values. Each
/// call (`seed`) makes its own series: a `shard` label tells them from the other calls' series.
fn floats(seed: u64, series: usize, per_series: usize, plain_nan: bool) -> Vec<FloatSeries> {
    let mut data = if std::env::var("BENCH_DATASET").is_ok_and(|d| d == "scraped") {
        scraped_series(seed, series, per_series)
    } else {
        float_series(seed, series, per_series, plain_nan)
    };
    for s in &mut data {
        s.labels.push(("shard".into(), seed.to_string()));
        s.labels.sort();
    }
    data
}

/// `BENCH_PIN=1`: the database and the controller get one core each (`taskset`), as when each runs in its own pod
/// with its own CPU; otherwise they share the machine's cores.
fn pinned() -> bool {
    std::env::var("BENCH_PIN").is_ok_and(|p| p == "1")
}

/// `BENCH_S3_NICE=1`: every thread of the S3 server at nice 19, so that it runs on what the database and the
/// controller leave idle, as a server on another machine would take nothing from them (on loopback it otherwise
/// competes for the same two cores).
fn lowest_priority(pid: u32) -> anyhow::Result<()> {
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let tid: libc::id_t = task?.file_name().to_string_lossy().parse()?;
        // SAFETY: setpriority takes plain integers; on Linux it sets one thread's nice value.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, 19) } != 0 {
            return Err(std::io::Error::last_os_error()).context("setpriority on the S3 server");
        }
    }
    Ok(())
}

/// Rounds of limit and backup per engine and size: `BENCH_ROUNDS`, default 5.
fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS").ok().and_then(|r| r.parse().ok()).filter(|&r| r > 0).unwrap_or(5)
}

fn median(durations: &mut [Duration]) -> Duration {
    durations.sort();
    durations[durations.len() / 2]
}

fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_kib() -> u64 {
    rss_kib("VmHWM:")
}

fn rss_kib(key: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
