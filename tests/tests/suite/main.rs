//! The integration suite: one test binary, one module per area, so the suite links once.
//!
//! Every module runs against a real `redis-server` (this binary's own, on a free port) or, with
//! `STORYFORGE_TEST_STORE=sqlite`, a real SQLite file; `TEST_LOG=1` shows the logs of the
//! StoryForge halves the tests start in-process (`RUST_LOG` filters them).
//!
//! # Layout
//! - the job store and the ticket path: `store`, `backlog`, `support_selftest` (the test
//!   support itself);
//! - the API and the pipeline end to end: `e2e`, `http`, `batches`, `events`, `webhooks`,
//!   `generation`, `conditions`, `builtin`, `corpus`;
//! - the parser alone: `parse_corpus`, `parse_fuzz`;
//! - what the outside sees: `cli`, `eval`, `metrics`, `mlflow`, `traces`, `deployment`.

mod backlog;
mod batches;
mod builtin;
mod cli;
mod conditions;
mod corpus;
mod deployment;
mod e2e;
mod eval;
mod events;
mod generation;
mod http;
mod metrics;
mod mlflow;
mod parse_corpus;
mod parse_fuzz;
mod store;
mod support_selftest;
mod traces;
mod webhooks;
