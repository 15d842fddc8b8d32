//! The StoryForge worker: takes tickets from the transport (apalis on Redis or on the embedded
//! store's ticket file) and does the durable work they name — generation, webhook deliveries,
//! MLflow runs — committing outcomes to the job store, either backend.
//!
//! # Layout
//! - [`run`]: the worker process — ticket worker, dispatcher, heartbeat and reconciler loops,
//!   graceful shutdown.
//! - [`jobs`]: one delivered ticket — claim, lease renewal, atomic commit, retries — and one
//!   file per kind of durable work.
//! - [`pipeline`]: the generation stages, one module each (story, conditions, prompt, parse,
//!   validate, check, collect, designer, judge, coverage, usage), and the loop over them
//!   (`generation.rs`).
//! - [`context`]: the context handed to every job: the process's services, its ticket
//!   transport, prompts and clients.

pub mod context;
pub mod jobs;
pub mod pipeline;
pub mod run;
