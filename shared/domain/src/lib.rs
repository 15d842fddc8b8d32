//! The data every side of StoryForge passes around: jobs and their results, batches, provider
//! health, and what follows from them alone (a `.feature` file, the words matching rules compare).
//!
//! # Layout
//! - [`job`]: the Job as clients see it, the submission it came from, test cases and results.
//! - [`batch`]: a batch of stories, its counts and summed usage.
//! - [`providers`]: what the workers know about their LLM providers (circuits, failures).
//! - [`gherkin`]: a succeeded job as a `.feature` file.
//! - [`words`]: the words of a text as matching rules compare them (stemmed, synonyms grouped).

pub mod batch;
pub mod gherkin;
pub mod job;
pub mod providers;
pub mod words;
