//! Prompt rendering from the versioned template files in `prompts/<set>/` and the few-shot
//! examples in `data/examples/user_stories.json`.
//!
//! Every call is a fresh conversation of a system and a user message: the first asks for the
//! cases (`generate.j2`), each later round states what is already there and what is still wanted
//! (`follow_up.j2`), and the judge gets its own pair. A small model's context never fills with
//! earlier rounds.
//!
//! The templates of set `v1` and the examples are compiled into the binaries, so every binary runs
//! from any directory; `STORYFORGE_PROMPTS_DIR` and `STORYFORGE_DATA_DIR` override them with files.
//! The prompt version is the set's name plus the first 12 hex digits of a SHA-256 over every
//! template and the examples, so two results carry the same version exactly when they were made
//! from the same prompt text, wherever it was read from. The generation prompt stays within the token budget (estimated at
//! four characters a token): the story is shortened first to [`Prompts::story_budget_chars`]
//! (`story.rs`), then few-shot examples are dropped, last first, until it fits.

use std::ops::RangeInclusive;
use std::path::Path;

use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storyforge_shared::job::Criterion;
use storyforge_shared::llm::ChatMessage;

use super::story::PreparedStory;

/// The template set compiled into the binaries, and its templates by name.
const BUILT_IN_SET: &str = "v1";
const BUILT_IN: [(&str, &str); 5] = [
    ("system", include_str!("../../../prompts/v1/system.j2")),
    ("generate", include_str!("../../../prompts/v1/generate.j2")),
    (
        "follow_up",
        include_str!("../../../prompts/v1/follow_up.j2"),
    ),
    (
        "judge_system",
        include_str!("../../../prompts/v1/judge_system.j2"),
    ),
    ("judge", include_str!("../../../prompts/v1/judge.j2")),
];
/// The few-shot examples compiled into the binaries.
const BUILT_IN_EXAMPLES: &str = include_str!("../../../data/examples/user_stories.json");

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read prompt template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read few-shot examples {path}: {reason}")]
    Examples { path: String, reason: String },
    #[error(
        "the prompt set {set:?} is not built in (only {BUILT_IN_SET:?} is); set STORYFORGE_PROMPTS_DIR to the folder that holds it"
    )]
    NotBuiltIn { set: String },
    #[error("prompt template {name} is invalid: {source}")]
    Template {
        name: String,
        source: minijinja::Error,
    },
}

#[derive(Debug, Clone, Deserialize)]
struct ExampleFile {
    examples: Vec<Example>,
}

#[derive(Debug, Clone, Deserialize)]
struct Example {
    user_story: String,
    test_cases: serde_json::Value,
}

/// What a follow-up round asks for; `follow_up.j2` renders it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FollowUp {
    /// `repair`, `unusable`, `cut_off`, `short`, `criteria`, `negative` or `duplicates`.
    pub reason: &'static str,
    /// The cases kept so far, as `TC_001: title`, so the model does not repeat them.
    pub titles: Vec<String>,
    /// Fewest new cases wanted.
    pub needed: u32,
    /// The id the first new case takes.
    pub next_id: String,
    /// `short`: what the kept cases still lack ("a negative case", "a case for AC2").
    pub missing: Vec<String>,
    /// `unusable`: why the last reply could not be used.
    pub problem: String,
    /// `repair`: the cases to correct, each as JSON with its problems.
    pub invalid: Vec<InvalidCase>,
    /// `criteria`: the criteria no case covers yet.
    pub focus: Vec<Criterion>,
    /// `duplicates`: titles of the cases dropped as repeats, owed a replacement.
    pub dropped: Vec<String>,
    /// Any reason: titles of the cases earlier replies repeated (at most the last ten), not to be
    /// written again.
    pub repeated: Vec<String>,
}

/// A case a repair round asks the model to correct.
#[derive(Debug, Clone, Serialize)]
pub struct InvalidCase {
    pub json: String,
    pub problems: Vec<String>,
}

/// Rough token count used for budgets: four characters a token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The loaded prompt set; built once per worker.
pub struct Prompts {
    env: Environment<'static>,
    examples: Vec<(String, String)>,
    version: String,
    token_budget: u64,
    /// Characters left for the story and its criteria once the rest of the generation prompt
    /// (without examples) is counted.
    story_budget_chars: usize,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts")
            .field("version", &self.version)
            .finish()
    }
}

impl Prompts {
    /// Loads set `set` from `prompts_dir/<set>/*.j2` (or the built-in set when no folder is
    /// given) and the examples from `data_dir/examples/user_stories.json` (or the built-in ones).
    pub fn load(
        prompts_dir: Option<&Path>,
        set: &str,
        data_dir: Option<&Path>,
        token_budget: u64,
    ) -> Result<Prompts, PromptError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        let mut hasher = Sha256::new();
        for (name, built_in) in BUILT_IN {
            let source = match prompts_dir {
                Some(dir) => {
                    let path = dir.join(set).join(format!("{name}.j2"));
                    std::fs::read_to_string(&path).map_err(|source| PromptError::Read {
                        path: path.display().to_string(),
                        source,
                    })?
                }
                None if set == BUILT_IN_SET => built_in.to_owned(),
                None => return Err(PromptError::NotBuiltIn { set: set.into() }),
            };
            hasher.update(name.as_bytes());
            hasher.update(source.as_bytes());
            env.add_template_owned(name, source)
                .map_err(|source| PromptError::Template {
                    name: name.into(),
                    source,
                })?;
        }
        let (examples_path, text) = match data_dir {
            Some(dir) => {
                let path = dir.join("examples").join("user_stories.json");
                let text = std::fs::read_to_string(&path).map_err(|e| PromptError::Examples {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
                (path, text)
            }
            None => (
                std::path::PathBuf::from("data/examples/user_stories.json (built in)"),
                BUILT_IN_EXAMPLES.to_owned(),
            ),
        };
        hasher.update(text.as_bytes());
        let file: ExampleFile = serde_json::from_str(&text).map_err(|e| PromptError::Examples {
            path: examples_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let examples = file
            .examples
            .into_iter()
            .map(|e| {
                let cases = serde_json::json!({ "test_cases": e.test_cases });
                (e.user_story, cases.to_string())
            })
            .collect();
        let digest = hex::encode(hasher.finalize());
        let mut prompts = Prompts {
            env,
            examples,
            version: format!("{set}@{}", &digest[..12]),
            token_budget,
            story_budget_chars: 0,
        };
        let empty = PreparedStory::default();
        let overhead: usize = prompts
            .render_generation(&empty, &(1..=1), 0)?
            .iter()
            .map(|m| m.content.chars().count())
            .sum();
        prompts.story_budget_chars = (token_budget as usize * 4).saturating_sub(overhead);
        Ok(prompts)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    fn render(&self, name: &str, ctx: minijinja::Value) -> Result<String, PromptError> {
        self.env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| PromptError::Template {
                name: name.into(),
                source,
            })
    }

    /// Characters the story text and its criteria may take in the generation prompt.
    pub fn story_budget_chars(&self) -> usize {
        self.story_budget_chars
    }

    fn system(
        &self,
        story: &PreparedStory,
        cases: &RangeInclusive<u32>,
    ) -> Result<String, PromptError> {
        self.render(
            "system",
            context! {
                min_cases => cases.start(),
                max_cases => cases.end(),
                has_criteria => !story.criteria.is_empty(),
            },
        )
    }

    fn render_generation(
        &self,
        story: &PreparedStory,
        cases: &RangeInclusive<u32>,
        shots: usize,
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let examples: Vec<_> = self.examples[..shots.min(self.examples.len())]
            .iter()
            .map(|(user_story, test_cases)| context! { user_story, test_cases })
            .collect();
        let user = self.render(
            "generate",
            context! { story => story.text, criteria => story.criteria, examples },
        )?;
        Ok(vec![
            ChatMessage::system(self.system(story, cases)?),
            ChatMessage::user(user),
        ])
    }

    /// The system and user messages asking for `cases` test cases, with as many few-shot
    /// examples (at most two) as the token budget leaves room for.
    pub fn generation(
        &self,
        story: &PreparedStory,
        cases: RangeInclusive<u32>,
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let mut shots = self.examples.len().min(2);
        loop {
            let messages = self.render_generation(story, &cases, shots)?;
            let tokens: u64 = messages.iter().map(|m| estimate_tokens(&m.content)).sum();
            if shots == 0 || tokens <= self.token_budget {
                return Ok(messages);
            }
            shots -= 1;
        }
    }

    /// The system and user messages of a follow-up round asking for `cases` more cases.
    pub fn follow_up(
        &self,
        story: &PreparedStory,
        cases: RangeInclusive<u32>,
        ask: &FollowUp,
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let user = self.render(
            "follow_up",
            context! { story => story.text, criteria => story.criteria, ..minijinja::Value::from_serialize(ask) },
        )?;
        Ok(vec![
            ChatMessage::system(self.system(story, &cases)?),
            ChatMessage::user(user),
        ])
    }

    /// The judge's system and user messages: the story, the cases as text, what the
    /// deterministic checks found and the highest coverage score they allow.
    pub fn judge(
        &self,
        story: &PreparedStory,
        test_cases: &str,
        findings: &[String],
        coverage_cap: u32,
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let system = self.render("judge_system", context! {})?;
        let user = self.render(
            "judge",
            context! { story => story.text, criteria => story.criteria, test_cases, findings, coverage_cap },
        )?;
        Ok(vec![ChatMessage::system(system), ChatMessage::user(user)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(budget: u64) -> Prompts {
        Prompts::load(None, "v1", None, budget).unwrap()
    }

    #[test]
    fn the_built_in_set_is_the_repository_s_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let from_files = Prompts::load(
            Some(&root.join("prompts")),
            "v1",
            Some(&root.join("data")),
            3000,
        )
        .unwrap();
        assert_eq!(from_files.version(), prompts(3000).version());
        let missing = Prompts::load(None, "v2", None, 3000).unwrap_err();
        assert!(
            missing.to_string().contains("set STORYFORGE_PROMPTS_DIR"),
            "{missing}"
        );
    }

    #[test]
    fn version_names_the_set_and_hashes_the_content() {
        let p = prompts(3000);
        assert!(p.version().starts_with("v1@"), "{}", p.version());
        assert_eq!(p.version().len(), "v1@".len() + 12);
    }

    fn story(text: &str, criteria: &[&str]) -> PreparedStory {
        let criteria: Vec<String> = criteria.iter().map(|c| c.to_string()).collect();
        super::super::story::prepare(text, &criteria, 10_000)
    }

    #[test]
    fn criteria_are_numbered_in_the_prompt() {
        let messages = prompts(3000)
            .generation(
                &story(
                    "As a user, I want to log in",
                    &["Valid login works", "Lockout after 5 tries"],
                ),
                3..=10,
            )
            .unwrap();
        assert!(messages[0].content.contains("\"covers\""));
        assert!(messages[0].content.contains("Write 3 to 10 test cases"));
        assert!(messages[1].content.contains("AC1: Valid login works"));
        assert!(messages[1].content.contains("AC2: Lockout after 5 tries"));
    }

    #[test]
    fn examples_are_dropped_to_fit_the_budget() {
        let login = story("As a user, I want to log in", &[]);
        let roomy = prompts(10_000).generation(&login, 3..=10).unwrap();
        let tight = prompts(300).generation(&login, 3..=10).unwrap();
        assert!(roomy[1].content.contains("Examples of good test cases"));
        assert!(!tight[1].content.contains("Examples of good test cases"));
        assert!(tight[1].content.contains("As a user, I want to log in"));
    }

    #[test]
    fn the_story_budget_is_what_the_prompt_leaves() {
        let small = prompts(1_000).story_budget_chars();
        let large = prompts(2_000).story_budget_chars();
        assert_eq!(large - small, 4_000, "four characters a token");
        assert!(small > 0 && small < 4_000);
    }

    #[test]
    fn a_follow_up_shows_the_kept_titles_and_asks_for_the_rest() {
        let ask = FollowUp {
            reason: "short",
            titles: vec!["TC_001: Login succeeds with valid credentials".into()],
            needed: 2,
            next_id: "TC_002".into(),
            missing: vec!["a negative case (invalid input, a refusal or a failure)".into()],
            ..FollowUp::default()
        };
        let messages = prompts(3000)
            .follow_up(&story("As a user, I want to log in", &[]), 2..=2, &ask)
            .unwrap();
        assert!(messages[0].content.contains("Write exactly 2 test cases"));
        let user = &messages[1].content;
        assert!(
            user.contains("- TC_001: Login succeeds with valid credentials"),
            "{user}"
        );
        assert!(user.contains("Write 2 additional test cases"), "{user}");
        assert!(user.contains("Still missing: a negative case"), "{user}");
        assert!(user.contains("from TC_002"), "{user}");
    }
}
