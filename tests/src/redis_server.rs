//! A private `redis-server` for tests, never the system one on 6379.
//!
//! Each test binary shares one server through [`RedisServer::shared`]; tests keep out of each other's
//! way by prefixing their keys with [`unique_namespace`]. A test that needs to restart or break Redis
//! starts its own with [`RedisServer::start`].
//!
//! # Cleaning up
//! The server runs without persistence (`--save "" --appendonly no`) in its own temporary `--dir`;
//! [`RedisServer::start_persistent`] gives one with an append-only file synced on every write,
//! whose data survives [`RedisServer::restart`] as a production Redis with AOF would.
//! A server held by a value dies in `Drop`. The shared server lives in a `static`, and statics are
//! never dropped, so every server also gets a `Watchdog`: a tiny `sh` whose stdin is a pipe from
//! the test process and which runs `read; kill -9 <redis pid>; rm -rf <dir>`. The kernel closes that
//! pipe when the test process ends for any reason — normal exit, panic, `SIGKILL` — so `read` returns
//! and the watchdog takes the server down at once. No polling of pids, no `prctl`, no `unsafe`.
//!
//! What does not live here: key layout or any StoryForge store logic.

use crate::process::free_port;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::process::Watchdog;

/// Where the Redis binary lives on the test machines; `REDIS_SERVER_BIN` overrides it.
const DEFAULT_REDIS_SERVER_BIN: &str = "/usr/bin/redis-server";

/// How long a fresh server may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How often to retry on a port that another process grabbed between our probe and the launch.
const PORT_COLLISION_RETRIES: usize = 5;

/// A `redis-server` owned by the test process, listening on `127.0.0.1:<port>`.
#[derive(Debug)]
pub struct RedisServer {
    /// Fixed for the server's lifetime, across [`RedisServer::restart`], so URLs handed out stay valid.
    port: u16,
    /// The running process and its watchdog; `None` only while restarting. Dropping it kills Redis.
    running: Option<Running>,
    /// The append-only file's folder of a persistent server, kept across restarts.
    data: Option<TempDir>,
}

/// One incarnation of the server: the process, its watchdog and its data directory.
#[derive(Debug)]
struct Running {
    /// The `redis-server` process itself, our direct child so we can kill and reap it.
    redis: Child,
    /// Kills `redis` and removes `dir` if the test process dies without running `Drop`.
    watchdog: Watchdog,
    /// `--dir` and the log file. Removed by the watchdog, and by `TempDir` when dropped normally.
    dir: TempDir,
}

impl RedisServer {
    /// The server shared by every test of this test binary, started on first use.
    ///
    /// Tests must keep their keys under a [`unique_namespace`] and must not `FLUSHALL`.
    pub fn shared() -> &'static RedisServer {
        static SHARED: OnceLock<RedisServer> = OnceLock::new();
        SHARED.get_or_init(RedisServer::start)
    }

    /// Starts a server of the caller's own on a free port; it is killed when the value is dropped.
    ///
    /// Blocks for the few milliseconds Redis needs to answer. Panics if it cannot start.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None)
    }

    /// Like [`RedisServer::start`], with an append-only file fsynced on every write
    /// (`--appendonly yes --appendfsync always`): a restart keeps every acknowledged write.
    pub fn start_persistent() -> RedisServer {
        let data = tempfile::Builder::new()
            .prefix("sf-redis-aof-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a data dir for redis-server: {error}"));
        RedisServer::start_with(Some(data))
    }

    fn start_with(data: Option<TempDir>) -> RedisServer {
        let mut last_error = String::new();
        for _ in 0..PORT_COLLISION_RETRIES {
            let port = free_port();
            let mut running = Running::launch(port, data.as_ref().map(TempDir::path));
            match running.wait_ready_blocking(port) {
                Ok(()) => {
                    return RedisServer {
                        port,
                        running: Some(running),
                        data,
                    };
                }
                // Most likely someone else took the port after we released it: try another one.
                Err(error) => last_error = error,
            }
        }
        panic!("redis-server did not start after {PORT_COLLISION_RETRIES} attempts: {last_error}");
    }

    /// `redis://127.0.0.1:<port>`, to hand to StoryForge as `STORYFORGE_REDIS_URL`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TCP port the server listens on; it does not change across restarts.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with `SIGKILL`, for tests of what happens without Redis.
    pub fn stop(&mut self) {
        self.running = None;
    }

    /// Kills the server with `SIGKILL` and starts a new one on the same port: empty, or for a
    /// persistent server with every write it acknowledged.
    ///
    /// This is what "Redis restarted" looks like to clients: connections drop, and without
    /// persistence every key is gone.
    /// Waits asynchronously for the new server, so in-process tasks keep running meanwhile.
    pub async fn restart(&mut self) {
        // Dropping the incarnation kills it (see `Drop for Running`).
        self.running = None;
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let mut running = Running::launch(self.port, self.data.as_ref().map(TempDir::path));
            match running.wait_ready_async(self.port).await {
                Ok(()) => {
                    self.running = Some(running);
                    return;
                }
                // The port may be briefly held by a process that grabbed it while we were down.
                Err(error) if Instant::now() < deadline => {
                    tracing::debug!(port = self.port, %error, "redis-server restart retrying");
                    drop(running);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!(
                    "redis-server did not restart on port {}: {error}",
                    self.port
                ),
            }
        }
    }
}

/// A key prefix no other test uses, e.g. `sf-test-3f2a…`; pass it as `STORYFORGE_NAMESPACE`.
pub fn unique_namespace(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

impl Running {
    /// Spawns `redis-server` on `port` and its watchdog. Does not wait for it to answer. With
    /// `data`, the append-only file lives there (and outlives this incarnation).
    fn launch(port: u16, data: Option<&Path>) -> Running {
        let dir = tempfile::Builder::new()
            .prefix("sf-redis-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot create a temp dir for redis-server: {error}"));
        let binary = std::env::var("REDIS_SERVER_BIN")
            .unwrap_or_else(|_| DEFAULT_REDIS_SERVER_BIN.to_owned());
        let persistence: &[&str] = match data {
            Some(_) => &["--appendonly", "yes", "--appendfsync", "always"],
            None => &["--appendonly", "no"],
        };
        let redis = Command::new(&binary)
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", ""])
            .args(persistence)
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(data.unwrap_or(dir.path()))
            .arg("--logfile")
            .arg(log_path(dir.path()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {binary}: {error}"));
        let watchdog = Watchdog::kill_on_exit(redis.id(), Some(dir.path()));
        Running {
            redis,
            watchdog,
            dir,
        }
    }

    /// Polls until the server on `port` reports our pid, failing early if the process exits
    /// (usually: port in use).
    fn wait_ready_blocking(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if server_pid_blocking(port) == Some(self.redis.id()) {
                return Ok(());
            }
            self.check_alive_before(deadline)?;
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Running::wait_ready_blocking`] without blocking the async runtime.
    async fn wait_ready_async(&mut self, port: u16) -> Result<(), String> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if server_pid_async(port).await == Some(self.redis.id()) {
                return Ok(());
            }
            self.check_alive_before(deadline)?;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn check_alive_before(&mut self, deadline: Instant) -> Result<(), String> {
        if let Ok(Some(status)) = self.redis.try_wait() {
            let log = self.log();
            // Reaped: its pid may be reused now, so the watchdog must not kill it any more.
            self.watchdog.disarm();
            return Err(format!("redis-server exited with {status}; log:\n{log}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no answer within {READY_TIMEOUT:?}; log:\n{}",
                self.log()
            ));
        }
        Ok(())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(log_path(self.dir.path())).unwrap_or_default()
    }
}

impl Drop for Running {
    /// Kills the server at once (no shutdown save) and reaps both processes.
    fn drop(&mut self) {
        // The watchdog sends SIGKILL while the server is still our unreaped child, so its pid
        // cannot have been reused by another process.
        self.watchdog.fire();
        let _ = self.redis.kill();
        let _ = self.redis.wait();
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.join("redis.log")
}

/// Asks whoever listens on `port` for its pid. Checking the pid, not just `PING`, guarantees we
/// talk to *our* server: after a port collision another process may answer while ours is exiting.
const INFO_SERVER: &[u8] = b"INFO server\r\n";

/// The pid in a complete `INFO server` reply (`$<len>\r\n...process_id:<pid>\r\n...\r\n`),
/// `None` while the reply is incomplete or not from Redis.
fn pid_in_info_reply(reply: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(reply).ok()?;
    let (header, rest) = text.strip_prefix('$')?.split_once("\r\n")?;
    let length: usize = header.parse().ok()?;
    let info = rest.get(..length)?;
    info.lines()
        .find_map(|line| line.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
}

fn server_pid_blocking(port: u16) -> Option<u32> {
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .ok()?;
    stream.write_all(INFO_SERVER).ok()?;
    let mut reply = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        let read = stream.read(&mut chunk).ok().filter(|read| *read > 0)?;
        reply.extend_from_slice(&chunk[..read]);
        if let Some(pid) = pid_in_info_reply(&reply) {
            return Some(pid);
        }
    }
}

async fn server_pid_async(port: u16) -> Option<u32> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let attempt = async {
        let mut stream = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .ok()?;
        stream.write_all(INFO_SERVER).await.ok()?;
        let mut reply = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            let read = stream
                .read(&mut chunk)
                .await
                .ok()
                .filter(|read| *read > 0)?;
            reply.extend_from_slice(&chunk[..read]);
            if let Some(pid) = pid_in_info_reply(&reply) {
                return Some(pid);
            }
        }
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
}
