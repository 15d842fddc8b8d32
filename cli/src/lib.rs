//! The `storyforge` command-line tool.
//!
//! # Layout
//! - [`up`]: the API and a worker pool in one process.
//!
//! `main.rs` parses the command line and prints a failure as one line; everything else is here.

pub mod up;
