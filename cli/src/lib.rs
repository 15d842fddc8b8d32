//! The `storyforge` command-line tool.
//!
//! # Layout
//! - [`up`]: the API and a worker pool in one process.
//! - [`submit`], [`status`], [`results`], [`list`]: clients of a running API — a backlog in as
//!   a batch (with a progress bar), a job's or batch's state, results written to a file or
//!   standard output, jobs and batches listed, and canceled.
//! - [`client`]: the HTTP client they share, and errors a person can act on.
//! - [`eval`]: measuring generated test cases against an evaluation set (must-cover matching).
//!
//! `main.rs` parses the command line and prints a failure as one line; everything else is here.

pub mod client;
pub mod eval;
pub mod list;
pub mod results;
pub mod status;
pub mod submit;
pub mod up;
