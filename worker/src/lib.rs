//! The StoryForge worker: takes tickets from the transport and does the durable work they name —
//! generation, webhook deliveries — committing outcomes to the store.
//!
//! # Layout
//! - [`run`]: the worker process — ticket worker, dispatcher, heartbeat and reconciler loops,
//!   graceful shutdown.
//! - [`jobs`]: one delivered ticket — claim, lease renewal, atomic commit, retries — and one
//!   file per kind of durable work.
//! - [`pipeline`]: the generation stages, one module each (prompt, parse, validate, judge,
//!   coverage, usage).
//! - [`context`]: the context handed to every job.

pub mod context;
pub mod jobs;
pub mod pipeline;
pub mod run;
