//! How every StoryForge binary starts and ends: a `.env` file in the working directory read into
//! the environment first (variables already set win, as the `dotenvy` convention is), the async
//! runtime built after that, and a failure said as one line — `storyforge-worker: …` — with exit
//! code 1, never a backtrace.

use std::fmt::Display;
use std::future::Future;
use std::path::PathBuf;
use std::process::ExitCode;

/// Reads `./.env` into the process environment, before any thread that could read it runs.
/// Returns the file read, if there was one; a line that cannot be parsed is an error naming it.
pub fn read_dotenv() -> Result<Option<PathBuf>, String> {
    match dotenvy::dotenv() {
        Ok(path) => Ok(Some(path)),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(dotenvy::Error::LineParse(line, at)) => Err(format!(
            ".env cannot be read: {line:?} is not NAME=value (at character {at})"
        )),
        Err(e) => Err(format!(".env cannot be read: {e}")),
    }
}

/// Reads `.env`, then runs `main` on a multi-threaded runtime; `Ok` exits 0, an error is one
/// line on stderr under `process`'s name (its causes joined by `: `) and exits 1. `main` gets
/// the `.env` file that was read, if any.
pub fn run<F, E>(process: &str, main: impl FnOnce(Option<PathBuf>) -> F) -> ExitCode
where
    F: Future<Output = Result<(), E>>,
    E: Display,
{
    let dotenv = match read_dotenv() {
        Ok(path) => path,
        Err(e) => return fail(process, e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(process, format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(main(dotenv)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(process, e),
    }
}

fn fail(process: &str, error: impl Display) -> ExitCode {
    eprintln!("{process}: {error:#}");
    ExitCode::FAILURE
}
