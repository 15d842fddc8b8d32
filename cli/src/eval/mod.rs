//! Measuring generated test cases against an evaluation set.
//!
//! - [`must_cover`]: whether a job's test cases cover a short "must cover" phrase of the
//!   evaluation set (`data/eval/test_dataset.json`), and which case does.
//!
//! Nothing here talks to the API: callers pass the test cases a job returned.

pub mod must_cover;
