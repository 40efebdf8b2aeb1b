//! Scale-out benchmark (not a test): `/diagnose` throughput with 1, 2 and 3 `drsn serve`
//! replicas sharing one PostgreSQL database (a throw-away server, as in the tests), the
//! clients spread evenly over the replicas; and the database's load, read from
//! `pg_stat_database`: transactions per second with the replicas idle, while they serve, and
//! for one training job.
//!
//!     eval "$(bash scripts/libtorch.sh)"
//!     cargo bench --bench replicas -- [--seconds 10] [--clients 64] [--replicas 1,2,3] [--no-job]
//!
//! Uses the shipped `models/` and, for the job, the CWRU data under `DRSN_SHARED_DATA`
//! (default `../shared/data`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sqlx::Connection;

#[path = "support/load.rs"]
mod load;
#[path = "../tests/service/common/postgres.rs"]
mod postgres;
mod support;

use load::{load, windows};
use support::{free_port, resident_kb, wait_ready, Server};

struct Args {
    seconds: f64,
    clients: usize,
    replicas: Vec<usize>,
    job: bool,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args { seconds: 10.0, clients: 64, replicas: vec![1, 2, 3], job: true };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => args.seconds = it.next().context("--seconds N")?.parse()?,
            "--clients" => args.clients = it.next().context("--clients N")?.parse()?,
            "--replicas" => {
                args.replicas =
                    it.next().context("--replicas 1,2,3")?.split(',').map(str::parse).collect::<Result<_, _>>()?
            }
            "--no-job" => args.job = false,
            "--bench" => {}
            other => bail!("unknown argument {other}; see benches/replicas.rs"),
        }
    }
    Ok(args)
}

/// Transactions committed or rolled back in the database so far. A busy backend flushes
/// its counts at most once a second and an idle one within 10 s (PostgreSQL 15's
/// PGSTAT_IDLE_INTERVAL), so they are read after an 11 s pause; the spans below include it.
async fn transactions(url: &str) -> anyhow::Result<i64> {
    tokio::time::sleep(Duration::from_secs(11)).await;
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let (n,): (i64,) = sqlx::query_as(
        "SELECT (xact_commit + xact_rollback)::BIGINT FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await?;
    conn.close().await?;
    Ok(n)
}

fn shared_data() -> PathBuf {
    std::env::var_os("DRSN_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

struct Row {
    replicas: usize,
    windows_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    idle_tps: f64,
    serving_tps: f64,
    job_transactions: Option<(i64, f64)>,
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let bodies = windows();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients * 2).build()?;
    let pg = postgres::server();
    let mut rows = Vec::new();
    for &n in &args.replicas {
        let url = runtime.block_on(pg.fresh_database());
        let dirs: Vec<_> = (0..n).map(|_| tempfile::tempdir()).collect::<Result<_, _>>()?;
        let mut servers = Vec::new();
        let mut bases = Vec::new();
        for (i, dir) in dirs.iter().enumerate() {
            let port = free_port()?;
            let child = Command::new(env!("CARGO_BIN_EXE_drsn"))
                .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
                .arg("--models")
                .arg(&models)
                .arg("--data-dir")
                .arg(dir.path())
                .arg("--data-root")
                .arg(shared_data())
                .args(["--database-url", &url, "--replica-name", &format!("r{i}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?;
            let mut server = Server(child);
            let base = format!("http://127.0.0.1:{port}");
            runtime.block_on(wait_ready(&client, &format!("{base}/health/ready"), &mut server))?;
            servers.push(server);
            bases.push(base);
        }
        let urls: Vec<String> = bases.iter().map(|b| format!("{b}/diagnose")).collect();
        let row = runtime.block_on(async {
            // Start-up (migrations, recording the shipped versions) is over by the first read.
            let t0 = transactions(&url).await?;
            let idle_started = Instant::now();
            tokio::time::sleep(Duration::from_secs(20)).await;
            let t1 = transactions(&url).await?;
            let idle_tps = (t1 - t0) as f64 / idle_started.elapsed().as_secs_f64();
            let serving_started = Instant::now();
            let m = load(&urls, &bodies, args.clients, args.seconds).await;
            let t2 = transactions(&url).await?;
            let serving_tps = (t2 - t1) as f64 / serving_started.elapsed().as_secs_f64();
            let job_transactions = match args.job && n == 1 {
                true => Some(one_job(&client, &bases[0], &url, idle_tps).await?),
                false => None,
            };
            anyhow::Ok(Row {
                replicas: n,
                windows_per_s: m.requests as f64 / m.seconds,
                p50_ms: m.p50_ms,
                p99_ms: m.p99_ms,
                errors: m.errors,
                idle_tps,
                serving_tps,
                job_transactions,
            })
        })?;
        for (i, server) in servers.iter().enumerate() {
            if let Ok((_, peak)) = resident_kb(server.0.id()) {
                eprintln!("replica r{i} of {n}: peak resident memory {} MiB", peak / 1024);
            }
        }
        eprintln!(
            "{n} replica(s): {:.0} windows/s, p50 {:.1} ms, p99 {:.1} ms, {} errors; database {:.1} tx/s idle, {:.1} tx/s serving",
            row.windows_per_s, row.p50_ms, row.p99_ms, row.errors, row.idle_tps, row.serving_tps
        );
        rows.push(row);
        drop(servers);
    }
    println!(
        "\n{} clients for {} s, spread over the replicas | {} logical CPUs",
        args.clients,
        args.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!("| replicas | windows/s | p50 ms | p99 ms | errors | database tx/s idle | database tx/s serving |");
    println!("|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {} | {:.1} | {:.1} |",
            r.replicas, r.windows_per_s, r.p50_ms, r.p99_ms, r.errors, r.idle_tps, r.serving_tps
        );
    }
    if let Some((tx, seconds)) = rows.iter().find_map(|r| r.job_transactions) {
        println!("\none training job (CWRU load 0, 64 windows per class, 3 epochs, one replica): {tx} database transactions beyond the idle rate and the benchmark's own polling, over {seconds:.1} s");
    }
    Ok(())
}

/// Runs one small training job; returns the transactions it cost beyond the idle rate and
/// how long it ran.
async fn one_job(client: &reqwest::Client, base: &str, url: &str, idle_tps: f64) -> anyhow::Result<(i64, f64)> {
    let before = transactions(url).await?;
    let started = Instant::now();
    let request = serde_json::json!({
        "model": "bench-replicas",
        "dataset": "cwru/manifest.csv",
        "data": {"sample_rate": 12000, "filter": {"load_hp": ["0"]}, "max_per_class": 64, "train_stride": 1024},
        "train": {"epochs": 3, "batch_size": 32},
    });
    let job: serde_json::Value = client.post(format!("{base}/jobs")).json(&request).send().await?.json().await?;
    let id = job["id"].as_str().with_context(|| format!("no job id in {job}"))?.to_string();
    let mut polls = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let job: serde_json::Value = client.get(format!("{base}/jobs/{id}")).send().await?.json().await?;
        polls += 1;
        match job["status"].as_str() {
            Some("succeeded") => break,
            Some("failed" | "cancelled") => bail!("the job ended {}: {}", job["status"], job["error"]),
            _ => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = transactions(url).await?;
    // The job's own: less the idle beat and poll over the whole span, and our polling (a
    // `GET /jobs/{id}` reads the job and its epochs: two transactions).
    let idle = (idle_tps * started.elapsed().as_secs_f64()).round() as i64;
    Ok((after - before - idle - 2 * polls, seconds))
}
