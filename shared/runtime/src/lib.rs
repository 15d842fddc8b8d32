//! What every StoryForge process runs on: its configuration, logs and traces, metrics, the
//! services it connects to at start-up, and the signal it stops on.
//!
//! # Layout
//! - [`config`]: the typed `Settings`, from environment variables and an optional TOML file.
//! - [`telemetry`]: logging (coloured only on a terminal, or JSON) and OpenTelemetry traces.
//! - [`metrics`]: the process's Prometheus metrics, with the store's gauges read at scrape time.
//! - [`generator`]: which generator a process uses when none is configured, decided the same
//!   way by every binary.
//! - [`services`]: the job store, provider chains and metrics a process connects to at start-up.
//! - [`shutdown`]: the signal every process stops on.
//! - [`start`]: how every binary starts (a `.env` read first) and ends (a failure as one line).

pub mod config;
pub mod generator;
pub mod metrics;
pub mod services;
pub mod shutdown;
pub mod start;
pub mod telemetry;

/// The version reported by `/status` and the binaries.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
