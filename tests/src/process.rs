//! StoryForge's own binaries as child processes, for end-to-end tests that kill and restart them.
//!
//! [`binary_path`] builds a binary once per test process and returns its path; [`ChildProcess`] runs
//! it with stdout and stderr in a log file, and kills it on drop. If the test is panicking at that
//! moment, the log's tail is printed and the file kept, so a failing test shows what the process
//! said. [`wait_until`] polls a condition with a deadline.
//!
//! `Drop` does not run when the test process is killed or aborts (a harness timeout, `SIGKILL`), so
//! every child also gets a `Watchdog`: an `sh` reading a pipe from the test process, which the
//! kernel closes however the test process ends; the watchdog then sends the child `SIGKILL`. Only
//! the direct child is killed, not processes it started itself.
//!
//! What does not live here: Redis or the fake LLM (see the sibling modules).

use std::collections::HashMap;
use std::fs::File;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tempfile::TempPath;

/// Inherited variables a child must not see, so a developer's shell cannot change a test's outcome
/// (a real API key, a real Redis URL). Tests pass what they need explicitly.
const SCRUBBED_PREFIXES: [&str; 2] = ["STORYFORGE_", "OTEL_"];
const SCRUBBED_NAMES: [&str; 5] = [
    "REDIS_URL",
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "OLLAMA_HOST",
    "MLFLOW_TRACKING_URI",
];

/// How many log lines a panicking test prints per child.
const LOG_TAIL_LINES: usize = 80;

/// Path of the workspace binary `name` (e.g. `storyforge-worker`), built by `cargo build --bin`.
///
/// The first call per name in a test process runs `cargo build` — always, not only when the file is
/// missing, because a binary left over from an older checkout would make the test exercise stale
/// code. Cargo answers in well under a second when nothing changed. Later calls reuse the result,
/// including a failed build, which panics with cargo's output in every test that needs it.
///
/// The binary goes where the running test binary lives (`<target>/debug/deps/..` → `<target>/debug`),
/// so `CARGO_TARGET_DIR`, `--target-dir` and `--release` are honoured without guessing. Blocks while
/// cargo runs.
pub fn binary_path(name: &str) -> PathBuf {
    static BUILT: Mutex<Option<HashMap<String, Result<PathBuf, String>>>> = Mutex::new(None);
    // Holding the lock while building serialises builds; cargo would serialise them anyway.
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    let result = built
        .get_or_insert_with(HashMap::new)
        .entry(name.to_owned())
        .or_insert_with(|| build(name));
    match result {
        Ok(path) => path.clone(),
        Err(error) => panic!("{error}"),
    }
}

/// Where cargo puts binaries for this test run, and the flags that select that profile.
struct Profile {
    /// `<target>/debug` or `<target>/<profile>`.
    dir: PathBuf,
    /// `--target-dir <target>` plus `--release` or `--profile <name>` as needed.
    cargo_args: Vec<String>,
}

fn profile() -> Profile {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or_else(|| panic!("storyforge-tests is not inside a workspace"))
        .to_path_buf();
    // A test binary runs from `<target>/<profile>/deps/`.
    let from_exe = std::env::current_exe().ok().and_then(|exe| {
        let deps = exe.parent()?;
        (deps.file_name()? == "deps").then(|| deps.parent().map(Path::to_path_buf))?
    });
    let dir = from_exe.unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|dir| workspace.join(dir))
            .unwrap_or_else(|| workspace.join("target"));
        target.join("debug")
    });
    let mut cargo_args = vec![
        "--manifest-path".to_owned(),
        workspace.join("Cargo.toml").display().to_string(),
    ];
    if let Some(target) = dir.parent() {
        cargo_args.extend(["--target-dir".to_owned(), target.display().to_string()]);
    }
    match dir.file_name().and_then(|name| name.to_str()) {
        Some("debug") | None => {}
        Some("release") => cargo_args.push("--release".to_owned()),
        Some(other) => cargo_args.extend(["--profile".to_owned(), other.to_owned()]),
    }
    Profile { dir, cargo_args }
}

fn build(name: &str) -> Result<PathBuf, String> {
    let profile = profile();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let started = Instant::now();
    let output = Command::new(&cargo)
        .arg("build")
        .args(["--bin", name])
        .args(&profile.cargo_args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run {cargo}: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "`cargo build --bin {name}` failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    tracing::debug!(binary = name, elapsed = ?started.elapsed(), "built");
    let path = profile.dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(format!(
            "cargo built {name} but {} does not exist",
            path.display()
        ))
    }
}

/// A running child process whose output goes to a log file; killed (`SIGKILL`) when dropped.
#[derive(Debug)]
pub struct ChildProcess {
    /// Names the process in log file names and in the output of a failing test.
    name: String,
    child: Child,
    /// Kills `child` if the test process dies without running `Drop`.
    watchdog: Watchdog,
    /// stdout and stderr, interleaved. Deleted on drop unless the test is panicking.
    log: Option<TempPath>,
}

impl ChildProcess {
    /// Runs the workspace binary `name` (built by [`binary_path`]) with `envs` added to a scrubbed
    /// environment: inherited `STORYFORGE_*`, `OTEL_*`, `REDIS_URL`, `OPENAI_API_KEY`,
    /// `ANTHROPIC_API_KEY`, `OLLAMA_HOST` and `MLFLOW_TRACKING_URI` are removed first.
    pub fn spawn(name: &str, envs: &[(&str, &str)]) -> ChildProcess {
        let path = binary_path(name);
        ChildProcess::spawn_command(&path.display().to_string(), &[], envs)
    }

    /// Runs any program with `args`, in the same scrubbed environment as [`ChildProcess::spawn`].
    pub fn spawn_command(program: &str, args: &[&str], envs: &[(&str, &str)]) -> ChildProcess {
        ChildProcess::spawn_command_in(None, program, args, envs)
    }

    /// Runs the workspace binary `name` with `args` in the working directory `dir`, in the same
    /// scrubbed environment as [`ChildProcess::spawn`].
    pub fn spawn_in(dir: &Path, name: &str, args: &[&str], envs: &[(&str, &str)]) -> ChildProcess {
        let path = binary_path(name);
        ChildProcess::spawn_command_in(Some(dir), &path.display().to_string(), args, envs)
    }

    fn spawn_command_in(
        dir: Option<&Path>,
        program: &str,
        args: &[&str],
        envs: &[(&str, &str)],
    ) -> ChildProcess {
        let name = Path::new(program)
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.to_owned());
        let (log_file, log) = tempfile::Builder::new()
            .prefix(&format!("sf-{name}-"))
            .suffix(".log")
            .tempfile()
            .unwrap_or_else(|error| panic!("cannot create a log file for {name}: {error}"))
            .into_parts();
        let stderr: File = log_file
            .try_clone()
            .unwrap_or_else(|error| panic!("cannot share the log file of {name}: {error}"));

        let mut command = Command::new(program);
        command.args(args);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            let scrubbed = SCRUBBED_PREFIXES
                .iter()
                .any(|prefix| key.starts_with(prefix))
                || SCRUBBED_NAMES.contains(&key.as_ref());
            if scrubbed {
                command.env_remove(key.as_ref());
            }
        }
        let child = command
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot run {program}: {error}"));
        let watchdog = Watchdog::kill_on_exit(child.id(), None);
        ChildProcess {
            name,
            child,
            watchdog,
            log: Some(log),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        self.log
            .as_deref()
            .unwrap_or_else(|| panic!("the log of {} is gone", self.name))
    }

    /// Everything the process wrote so far.
    pub fn log_contents(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Sends `SIGKILL`: the process dies at once, mid-whatever it was doing. Does not wait.
    pub fn kill_9(&mut self) {
        // `Child::kill` is SIGKILL on Unix; an error only means it has already exited.
        let _ = self.child.kill();
    }

    /// Sends `SIGTERM`, asking for a graceful shutdown. Does not wait; see [`Self::wait_exit`].
    pub fn terminate(&mut self) {
        // An exited but unreaped child keeps its pid, so this cannot hit an unrelated process.
        if self.try_reap().is_some() {
            return;
        }
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap_or_else(|error| panic!("cannot run kill: {error}"));
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Waits up to `timeout` for the process to exit; `None` if it is still running.
    ///
    /// Async so that servers living in the test's own runtime (a fake LLM the child is talking to)
    /// keep answering while we wait. Use `ExitStatusExt::signal` to see a kill.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.try_reap() {
                Some(status) => return Some(status),
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                None => return None,
            }
        }
    }

    /// The exit status if the child has exited. Reaping frees its pid for reuse, so the watchdog
    /// must not send anything to it afterwards.
    fn try_reap(&mut self) -> Option<ExitStatus> {
        let status = self
            .child
            .try_wait()
            .unwrap_or_else(|error| panic!("cannot wait for {}: {error}", self.name))?;
        self.watchdog.disarm();
        Some(status)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // Watchdog first: until `wait` below the child is unreaped, so its pid is still its own.
        self.watchdog.fire();
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking()
            && let Some(log) = self.log.take()
        {
            let contents = std::fs::read_to_string(&log).unwrap_or_default();
            let lines: Vec<&str> = contents.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
            match log.keep() {
                Ok(path) => eprintln!(
                    "--- last lines of {} (pid {}), full log kept at {} ---\n{tail}\n--- end ---",
                    self.name,
                    self.child.id(),
                    path.display()
                ),
                Err(error) => eprintln!("--- log of {} ({error}) ---\n{tail}", self.name),
            }
        }
    }
}

/// Sends `SIGKILL` to a process when the test process ends, however it ends.
///
/// An `sh` whose stdin is a pipe from us waits in `read`. The kernel closes the pipe when the test
/// process exits, panics, aborts or is killed; `read` then sees end-of-file and the watchdog kills
/// the process (and removes `remove_dir`, if given). Rust opens pipes close-on-exec, so no other
/// child inherits the pipe and keeps it open. Needs no `unsafe`, `prctl` or pid polling.
#[derive(Debug)]
pub(crate) struct Watchdog {
    sh: Child,
    /// Closing it fires the watchdog; writing `disarm` ends it without killing.
    pipe: Option<ChildStdin>,
}

impl Watchdog {
    /// Guards `pid`, which must be our own unreaped child so the pid cannot be reused meanwhile.
    pub(crate) fn kill_on_exit(pid: u32, remove_dir: Option<&Path>) -> Watchdog {
        let script = r#"read -r word; [ "$word" = disarm ] || kill -9 "$1" 2>/dev/null; [ -z "$2" ] || rm -rf "$2""#;
        Watchdog::run(
            script,
            pid,
            remove_dir.map(Path::as_os_str).unwrap_or_default(),
        )
    }

    /// Guards the process group `pgid` (a child started with `process_group(0)`): the whole
    /// group is killed.
    pub(crate) fn kill_group_on_exit(pgid: u32) -> Watchdog {
        let script = r#"read -r word; [ "$word" = disarm ] || kill -KILL "-$1" 2>/dev/null"#;
        Watchdog::run(script, pgid, Default::default())
    }

    fn run(script: &str, pid: u32, dir: &std::ffi::OsStr) -> Watchdog {
        let mut sh = Command::new("sh")
            .args(["-c", script, "sf-watchdog", &pid.to_string()])
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start a watchdog sh: {error}"));
        let pipe = sh.stdin.take();
        Watchdog { sh, pipe }
    }

    /// Kills the guarded process now and waits for the watchdog to finish. Idempotent.
    pub(crate) fn fire(&mut self) {
        if self.pipe.take().is_some() {
            let _ = self.sh.wait();
        }
    }

    /// Ends the watchdog without killing: call it once the guarded process has been reaped.
    pub(crate) fn disarm(&mut self) {
        if let Some(mut pipe) = self.pipe.take() {
            let _ = pipe.write_all(b"disarm\n");
            drop(pipe);
            let _ = self.sh.wait();
        }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.fire();
    }
}

/// Polls `check` until it returns `Some`, and returns that value.
///
/// Panics with `what` and the time spent if `timeout` passes first, e.g.
/// `wait_until(Duration::from_secs(10), "job 42 succeeded", || async { ... }).await`.
pub async fn wait_until<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let started = Instant::now();
    let mut interval = Duration::from_millis(10);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        let elapsed = started.elapsed();
        assert!(
            elapsed < timeout,
            "timed out after {elapsed:.1?} (limit {timeout:?}) waiting until {what}"
        );
        tokio::time::sleep(interval.min(timeout - elapsed)).await;
        interval = (interval * 2).min(Duration::from_millis(100));
    }
}

/// A port free right now for a server a test starts and binds a moment later. It is drawn from
/// below the kernel's ephemeral range (32768–60999 by default), which every server bound to
/// port 0 and every outgoing connection of the suite draw from, so none of them can take it in
/// that moment; another process still might, and callers that start servers retry on that rare
/// collision.
pub fn free_port() -> u16 {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos())
        ^ std::process::id();
    for _ in 0..SPAN {
        let step = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + seed.wrapping_add(step.wrapping_mul(7_919)) % SPAN;
        let port = u16::try_from(port).expect("below 32000");
        if std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).is_ok() {
            return port;
        }
    }
    panic!("cannot find a free port between {LOW} and {}", LOW + SPAN)
}

/// Waits (up to a minute) until the API at `base` answers `/health`.
pub async fn wait_healthy(http: &reqwest::Client, base: &str) {
    wait_until(
        Duration::from_secs(60),
        &format!("{base} answers /health"),
        || async {
            http.get(format!("{base}/health"))
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
        },
    )
    .await;
}
