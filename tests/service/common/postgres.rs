//! A throw-away PostgreSQL server for the tests: `initdb` and `pg_ctl` from Debian's
//! `postgresql` (the test command installs it when missing) in a temporary folder, on a
//! free loopback port, one per test binary, stopped when the binary exits. Both programs
//! refuse to run as root, so as root they run as `nobody`. Each test gets a database of
//! its own. When no server can be had the test fails and says why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use sqlx::Connection;

pub struct Postgres {
    _dir: tempfile::TempDir,
    pub port: u16,
}

/// The data folder and `pg_ctl` of the running server, for the exit hook.
static RUNNING: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);

extern "C" fn stop_at_exit() {
    let running = RUNNING.lock().map(|r| r.clone()).unwrap_or(None);
    if let Some((pg_ctl, data)) = running {
        let _ =
            as_postgres_user(&pg_ctl, &["-D", &data.display().to_string(), "-m", "immediate", "-w", "stop"]).output();
    }
}

fn bin_dir() -> Result<PathBuf, String> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok).map(|e| e.path().join("bin")).filter(|b| b.join("initdb").is_file()).collect()
        })
        .unwrap_or_default();
    found.sort();
    found.pop().ok_or_else(|| {
        "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb); `apt-get install postgresql` \
         (scripts/test.sh does it)"
            .to_string()
    })
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `program args` as the current user, or as `nobody` when that is root.
fn as_postgres_user(program: &Path, args: &[&str]) -> Command {
    if is_root() {
        let line = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| format!("'{}'", a.replace('\'', "'\\''"))))
            .collect::<Vec<_>>()
            .join(" ");
        let mut cmd = Command::new("su");
        cmd.args(["nobody", "-s", "/bin/sh", "-c", &line]);
        cmd
    } else {
        let mut cmd = Command::new(program);
        cmd.args(args);
        cmd
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn start() -> Result<Postgres, String> {
    let bin = bin_dir()?;
    let dir = tempfile::Builder::new().prefix("drsn-pg-").tempdir().map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    if is_root() {
        run(Command::new("chown").args(["nobody", &dir.path().display().to_string()]), "chown")?;
    }
    let port =
        std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(|e| e.to_string())?.port();
    let data_arg = data.display().to_string();
    run(
        &mut as_postgres_user(&bin.join("initdb"), &["-D", &data_arg, "-A", "trust", "-U", "drsn", "--no-sync"]),
        "initdb",
    )?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=400",
        dir.path().display()
    );
    let log = dir.path().join("log").display().to_string();
    run(
        &mut as_postgres_user(&bin.join("pg_ctl"), &["-D", &data_arg, "-o", &options, "-l", &log, "-w", "start"]),
        "pg_ctl start",
    )
    .map_err(|e| format!("{e}\n{}", std::fs::read_to_string(&log).unwrap_or_default()))?;
    *RUNNING.lock().map_err(|e| e.to_string())? = Some((bin.join("pg_ctl"), data));
    // SAFETY: registers a plain function, run once at exit.
    unsafe { libc::atexit(stop_at_exit) };
    Ok(Postgres { _dir: dir, port })
}

/// The test binary's server, started on first use.
pub fn server() -> &'static Postgres {
    static SERVER: OnceLock<Result<Postgres, String>> = OnceLock::new();
    match SERVER.get_or_init(start) {
        Ok(server) => server,
        Err(why) => panic!("no throw-away PostgreSQL server: {why}"),
    }
}

impl Postgres {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://drsn@127.0.0.1:{}/{database}", self.port)
    }

    /// A new, empty database; returns its URL.
    pub async fn fresh_database(&self) -> String {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!("t{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let mut admin =
            sqlx::PgConnection::connect(&self.url("postgres")).await.expect("connect to the throw-away server");
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.expect("create a database");
        admin.close().await.ok();
        self.url(&name)
    }
}
