//! The StoryForge worker: takes jobs from the queue, runs the generation pipeline, commits results.
//!
//! # Layout
//! - [`run`]: the worker process — apalis worker, dispatcher, heartbeat and reconciler loops,
//!   graceful shutdown.
//! - [`execute`]: one delivered ticket — claim, lease renewal, pipeline, atomic commit, retries.
//! - [`pipeline`]: the generation stages, one module each (prompt, parse, validate, judge,
//!   coverage, usage).
//! - [`context`]: the context handed to every job.

pub mod context;
pub mod execute;
pub mod pipeline;
pub mod run;
