//! Prompt rendering from the versioned template files in `prompts/<set>/`.
//!
//! Every call is a fresh conversation of a system and a user message. Generation-side calls —
//! the domain risks of a story (`risks.j2`), test cases for a few conditions (`cases.j2`) and
//! their repair (`repair.j2`) — share one system prompt and start their user message with the
//! same story and criteria (`story.j2`); only what the call asks comes last, so servers that
//! reuse a prompt prefix between requests (llama.cpp, Ollama, vLLM) can skip evaluating it
//! again. The system prompt ends with two worked examples from an unrelated story
//! (`examples.j2`); the words the template names as distinctive of that story are kept,
//! so that a case copying the example is caught. The judge gets its own pair.
//!
//! The templates of set `v2` are compiled into the binaries, so every binary runs from any
//! directory; `STORYFORGE_PROMPTS_DIR` overrides them with files. The prompt version is the set's
//! name plus the first 12 hex digits of a SHA-256 over every template, so two results carry the
//! same version exactly when they were made from the same prompt text, wherever it was read
//! from. The story is shortened to [`Prompts::story_budget_chars`] (`story.rs`) so that a call's
//! prompt stays within the token budget (estimated at four characters a token).

use std::path::Path;

use minijinja::{Environment, context};
use serde::Serialize;
use sha2::{Digest, Sha256};
use storyforge_domain::words::content_tokens;
use storyforge_llm::ChatMessage;

use storyforge_domain::job::{Expect, Technique};

use super::conditions::TestCondition;
use super::story::PreparedStory;

/// The template set compiled into the binaries, and its templates by name.
const BUILT_IN_SET: &str = "v2";
const BUILT_IN: [(&str, &str); 8] = [
    ("system", include_str!("../../../prompts/v2/system.j2")),
    ("examples", include_str!("../../../prompts/v2/examples.j2")),
    ("story", include_str!("../../../prompts/v2/story.j2")),
    ("cases", include_str!("../../../prompts/v2/cases.j2")),
    ("risks", include_str!("../../../prompts/v2/risks.j2")),
    ("repair", include_str!("../../../prompts/v2/repair.j2")),
    (
        "judge_system",
        include_str!("../../../prompts/v2/judge_system.j2"),
    ),
    ("judge", include_str!("../../../prompts/v2/judge.j2")),
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read prompt template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
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

/// A condition as the templates show it.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionView {
    pub id: String,
    pub criterion: Option<String>,
    pub text: String,
    /// The expected outcome in a few words: "refused", "accepted", "as AC2 says", or what the
    /// other path is.
    pub expected: String,
}

impl From<&TestCondition> for ConditionView {
    fn from(c: &TestCondition) -> ConditionView {
        let expected = match (c.technique, c.expect, &c.criterion) {
            (Technique::Clause, _, Some(criterion)) => format!("as {criterion} says"),
            (_, Expect::Refused, _) => "refused".to_string(),
            (_, Expect::Accepted, _) => "accepted".to_string(),
            (_, Expect::Other, _) => c.outcome.clone(),
        };
        ConditionView {
            id: c.id.clone(),
            criterion: c.criterion.clone(),
            text: c.text.clone(),
            expected,
        }
    }
}

/// The conditions of one criterion (or of the story as a whole) in a cases prompt.
#[derive(Debug, Clone, Serialize)]
pub struct ConditionGroup {
    pub criterion: Option<String>,
    /// The criterion's text.
    pub text: String,
    pub conditions: Vec<ConditionView>,
}

/// `conditions` under their criteria, in order of first appearance.
fn grouped(story: &PreparedStory, conditions: &[ConditionView]) -> Vec<ConditionGroup> {
    let mut groups: Vec<ConditionGroup> = Vec::new();
    for c in conditions {
        match groups.iter_mut().find(|g| g.criterion == c.criterion) {
            Some(group) => group.conditions.push(c.clone()),
            None => groups.push(ConditionGroup {
                criterion: c.criterion.clone(),
                text: story
                    .criteria
                    .iter()
                    .find(|k| Some(&k.id) == c.criterion.as_ref())
                    .map(|k| k.text.clone())
                    .unwrap_or_default(),
                conditions: vec![c.clone()],
            }),
        }
    }
    groups
}

/// A case a repair round hands back: its condition, the case as JSON and its problems.
#[derive(Debug, Clone, Serialize)]
pub struct RepairItem {
    pub condition: ConditionView,
    pub json: String,
    pub problems: Vec<String>,
}

/// The words the examples template names as its own in a `{# distinctive: a, b, … #}` comment:
/// words of the examples' story that a case of another story has no reason to use.
fn distinctive_words(source: &str) -> Vec<String> {
    source
        .split("{#")
        .filter_map(|comment| comment.split("#}").next())
        .filter_map(|comment| comment.trim().strip_prefix("distinctive:"))
        .flat_map(content_tokens)
        .collect()
}

/// Rough token count used for budgets: four characters a token.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.chars().count() as u64).div_ceil(4)
}

/// The loaded prompt set; built once per worker.
pub struct Prompts {
    env: Environment<'static>,
    version: String,
    /// Words of the system prompt's worked examples that its instructions do not use: a case
    /// holding several of them that its own story does not copies the example.
    example_words: Vec<String>,
    /// Characters left for the story and its criteria once the rest of a cases prompt is
    /// counted.
    story_budget_chars: usize,
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts")
            .field("version", &self.version)
            .finish()
    }
}

/// How many conditions a cases prompt is sized for when the story budget is worked out.
const BUDGETED_CONDITIONS: usize = 5;

impl Prompts {
    /// Loads set `set` from `prompts_dir/<set>/*.j2`, or the built-in set when no folder is
    /// given.
    pub fn load(
        prompts_dir: Option<&Path>,
        set: &str,
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
        let digest = hex::encode(hasher.finalize());
        let mut prompts = Prompts {
            env,
            version: format!("{set}@{}", &digest[..12]),
            example_words: Vec::new(),
            story_budget_chars: 0,
        };
        prompts.example_words = distinctive_words(
            prompts
                .env
                .get_template("examples")
                .map(|t| t.source().to_string())
                .unwrap_or_default()
                .as_str(),
        );
        let placeholder = ConditionView {
            id: "C10".into(),
            criterion: Some("AC10".into()),
            text: "x".repeat(80),
            expected: "x".repeat(40),
        };
        let overhead: usize = prompts
            .cases(
                &PreparedStory::default(),
                &vec![placeholder; BUDGETED_CONDITIONS],
            )?
            .iter()
            .map(|m| m.content.chars().count())
            .sum();
        prompts.story_budget_chars = (token_budget as usize * 4).saturating_sub(overhead);
        Ok(prompts)
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    /// Words only the worked examples use (see [`check::copies_example`](super::check)).
    pub fn example_words(&self) -> &[String] {
        &self.example_words
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

    /// Characters the story text and its criteria may take in a prompt.
    pub fn story_budget_chars(&self) -> usize {
        self.story_budget_chars
    }

    /// The shared system prompt and a user message of `template` after the story.
    fn generation_side(
        &self,
        template: &str,
        story: &PreparedStory,
        ctx: minijinja::Value,
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let user = self.render(
            template,
            context! { story => story.text, criteria => story.criteria, ..ctx },
        )?;
        let system = format!(
            "{}\n{}",
            self.render("system", context! {})?,
            self.render("examples", context! {})?
        );
        Ok(vec![ChatMessage::system(system), ChatMessage::user(user)])
    }

    /// Asks for one test case per condition, in order, the conditions under their criteria.
    pub fn cases(
        &self,
        story: &PreparedStory,
        conditions: &[ConditionView],
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let groups = grouped(story, conditions);
        let count = conditions.len();
        self.generation_side("cases", story, context! { groups, count })
    }

    /// Asks for `count` domain risks the planned `conditions` do not state.
    pub fn risks(
        &self,
        story: &PreparedStory,
        count: u32,
        conditions: &[ConditionView],
    ) -> Result<Vec<ChatMessage>, PromptError> {
        self.generation_side("risks", story, context! { count, conditions })
    }

    /// Hands cases that failed their checks back, each with its condition and problems.
    pub fn repair(
        &self,
        story: &PreparedStory,
        items: &[RepairItem],
    ) -> Result<Vec<ChatMessage>, PromptError> {
        self.generation_side("repair", story, context! { items })
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
        Prompts::load(None, "v2", budget).unwrap()
    }

    #[test]
    fn the_built_in_set_is_the_repository_s_files() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let from_files = Prompts::load(Some(&root.join("prompts")), "v2", 3000).unwrap();
        assert_eq!(from_files.version(), prompts(3000).version());
        let missing = Prompts::load(None, "v3", 3000).unwrap_err();
        assert!(
            missing.to_string().contains("set STORYFORGE_PROMPTS_DIR"),
            "{missing}"
        );
    }

    #[test]
    fn version_names_the_set_and_hashes_the_content() {
        let p = prompts(3000);
        assert!(p.version().starts_with("v2@"), "{}", p.version());
        assert_eq!(p.version().len(), "v2@".len() + 12);
    }

    fn story(text: &str, criteria: &[&str]) -> PreparedStory {
        let criteria: Vec<String> = criteria.iter().map(|c| c.to_string()).collect();
        super::super::story::prepare(text, &criteria, 10_000)
    }

    fn condition(id: &str, text: &str, expect: Expect) -> ConditionView {
        ConditionView::from(&TestCondition {
            id: id.into(),
            criterion: Some("AC2".into()),
            technique: Technique::Boundary,
            text: text.into(),
            expect,
            outcome: "it is refused with a message naming the limit of 5 tries".into(),
            setup: None,
            action: "tries it".into(),
            actor: None,
            values: vec![],
            key_words: vec![],
            tier: 1,
        })
    }

    #[test]
    fn every_generation_call_starts_with_the_same_system_prompt_and_story() {
        let p = prompts(3000);
        let login = story(
            "As a user, I want to log in",
            &["Valid login works", "Lockout after 5 tries"],
        );
        let cases = p
            .cases(
                &login,
                &[condition(
                    "C3",
                    "6 tries, one over the limit of 5",
                    Expect::Refused,
                )],
            )
            .unwrap();
        let risks = p
            .risks(
                &login,
                2,
                &[condition("C1", "Valid login", Expect::Accepted)],
            )
            .unwrap();
        assert_eq!(cases[0].content, risks[0].content, "one system prompt");
        let prefix = "User story:\nAs a user, I want to log in\n\nAcceptance criteria:\nAC1: Valid login works\nAC2: Lockout after 5 tries\n";
        assert!(cases[1].content.starts_with(prefix), "{}", cases[1].content);
        assert!(risks[1].content.starts_with(prefix), "{}", risks[1].content);
        assert!(cases[1].content.contains("AC2: Lockout after 5 tries\nC3: 6 tries, one over the limit of 5 -> expected outcome: refused"), "{}", cases[1].content);
        assert!(
            cases[1].content.contains("only: 1 test case, each"),
            "{}",
            cases[1].content
        );
        assert!(risks[1].content.contains("Name 2 such risks"));
    }

    #[test]
    fn a_repair_names_each_condition_and_problem() {
        let p = prompts(3000);
        let login = story("As a user, I want to log in", &["Lockout after 5 tries"]);
        let item = RepairItem {
            condition: condition("C2", "6 tries, one over the limit of 5", Expect::Refused),
            json: "{\"title\": \"Login works\"}".into(),
            problems: vec!["the case does not state the value 6".into()],
        };
        let messages = p.repair(&login, &[item]).unwrap();
        let user = &messages[1].content;
        assert!(
            user.contains(
                "C2 (AC2): 6 tries, one over the limit of 5 -> expected outcome: refused"
            ),
            "{user}"
        );
        assert!(
            user.contains("- the case does not state the value 6"),
            "{user}"
        );
        assert!(
            user.contains("Write a corrected test case for each of these 1 condition,"),
            "{user}"
        );
    }

    #[test]
    fn the_examples_name_their_distinctive_words() {
        let words = prompts(3000).example_words().to_vec();
        assert!(words.contains(&"book".to_string()), "{words:?}");
        assert!(words.contains(&"loan".to_string()), "{words:?}");
        assert!(!words.contains(&"email".to_string()), "{words:?}");
    }

    #[test]
    fn the_story_budget_is_what_the_prompt_leaves() {
        let small = prompts(1_000).story_budget_chars();
        let large = prompts(2_000).story_budget_chars();
        assert_eq!(large - small, 4_000, "four characters a token");
        assert!(small > 0 && small < 4_000);
    }
}
