//! Prompt rendering from the versioned template files in `prompts/<set>/` and the few-shot
//! examples in `data/examples/user_stories.json`.
//!
//! The prompt version is the set's name plus the first 12 hex digits of a SHA-256 over every
//! template and the examples, so two results carry the same version exactly when they were made
//! from the same prompt text. Few-shot examples are dropped, last first, until the rendered
//! generation prompt fits the token budget (estimated at four characters a token).

use std::path::Path;

use minijinja::{Environment, context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storyforge_shared::llm::ChatMessage;

use super::coverage::criterion_ids;

const TEMPLATES: [&str; 7] = [
    "system",
    "generate",
    "repair",
    "continue",
    "missing_criteria",
    "judge_system",
    "judge",
];

#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    #[error("cannot read prompt template {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot read few-shot examples {path}: {reason}")]
    Examples { path: String, reason: String },
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

#[derive(Serialize)]
struct Criterion<'a> {
    id: String,
    text: &'a str,
}

fn numbered(criteria: &[String]) -> Vec<Criterion<'_>> {
    criterion_ids(criteria)
        .into_iter()
        .zip(criteria)
        .map(|(id, text)| Criterion { id, text })
        .collect()
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
}

impl std::fmt::Debug for Prompts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prompts")
            .field("version", &self.version)
            .finish()
    }
}

impl Prompts {
    /// Loads `prompts_dir/<set>/*.j2` and `data_dir/examples/user_stories.json`.
    pub fn load(
        prompts_dir: &Path,
        set: &str,
        data_dir: &Path,
        token_budget: u64,
    ) -> Result<Prompts, PromptError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        let mut hasher = Sha256::new();
        for name in TEMPLATES {
            let path = prompts_dir.join(set).join(format!("{name}.j2"));
            let source = std::fs::read_to_string(&path).map_err(|source| PromptError::Read {
                path: path.display().to_string(),
                source,
            })?;
            hasher.update(name.as_bytes());
            hasher.update(source.as_bytes());
            env.add_template_owned(name, source)
                .map_err(|source| PromptError::Template {
                    name: name.into(),
                    source,
                })?;
        }
        let examples_path = data_dir.join("examples").join("user_stories.json");
        let text = std::fs::read_to_string(&examples_path).map_err(|e| PromptError::Examples {
            path: examples_path.display().to_string(),
            reason: e.to_string(),
        })?;
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
        Ok(Prompts {
            env,
            examples,
            version: format!("{set}@{}", &digest[..12]),
            token_budget,
        })
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

    /// The system and user messages asking for test cases.
    pub fn generation(
        &self,
        story: &str,
        criteria: &[String],
        min_cases: u32,
        max_cases: u32,
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let system = self.render(
            "system",
            context! { min_cases, max_cases, has_criteria => !criteria.is_empty() },
        )?;
        let mut shots = self.examples.len().min(2);
        let user = loop {
            let examples: Vec<_> = self.examples[..shots]
                .iter()
                .map(|(user_story, test_cases)| context! { user_story, test_cases })
                .collect();
            let user = self.render(
                "generate",
                context! { story, criteria => numbered(criteria), examples },
            )?;
            if shots == 0 || estimate_tokens(&system) + estimate_tokens(&user) <= self.token_budget
            {
                break user;
            }
            shots -= 1;
        };
        Ok(vec![ChatMessage::system(system), ChatMessage::user(user)])
    }

    /// The follow-up turn listing what was wrong with the model's last answer.
    pub fn repair(&self, issues: &[String]) -> Result<String, PromptError> {
        self.render("repair", context! { issues })
    }

    /// The follow-up turn asking for the rest of an answer cut off at the token limit.
    pub fn continuation(
        &self,
        count: usize,
        needed: usize,
        next_id: &str,
    ) -> Result<String, PromptError> {
        self.render("continue", context! { count, needed, next_id })
    }

    /// The follow-up turn asking for cases covering the criteria still uncovered.
    pub fn missing_criteria(
        &self,
        criteria: &[(String, String)],
        next_id: &str,
    ) -> Result<String, PromptError> {
        let criteria: Vec<_> = criteria
            .iter()
            .map(|(id, text)| context! { id, text })
            .collect();
        self.render("missing_criteria", context! { criteria, next_id })
    }

    /// The judge's system and user messages.
    pub fn judge(
        &self,
        story: &str,
        criteria: &[String],
        test_cases_json: &str,
    ) -> Result<Vec<ChatMessage>, PromptError> {
        let system = self.render("judge_system", context! {})?;
        let user = self.render(
            "judge",
            context! { story, criteria => numbered(criteria), test_cases => test_cases_json },
        )?;
        Ok(vec![ChatMessage::system(system), ChatMessage::user(user)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompts(budget: u64) -> Prompts {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        Prompts::load(&root.join("prompts"), "v1", &root.join("data"), budget).unwrap()
    }

    #[test]
    fn version_names_the_set_and_hashes_the_content() {
        let p = prompts(3000);
        assert!(p.version().starts_with("v1@"), "{}", p.version());
        assert_eq!(p.version().len(), "v1@".len() + 12);
    }

    #[test]
    fn criteria_are_numbered_in_the_prompt() {
        let messages = prompts(3000)
            .generation(
                "As a user, I want to log in",
                &["Valid login works".into(), "Lockout after 5 tries".into()],
                3,
                10,
            )
            .unwrap();
        assert!(messages[0].content.contains("\"covers\""));
        assert!(messages[1].content.contains("AC1: Valid login works"));
        assert!(messages[1].content.contains("AC2: Lockout after 5 tries"));
    }

    #[test]
    fn examples_are_dropped_to_fit_the_budget() {
        let roomy = prompts(10_000)
            .generation("As a user, I want to log in", &[], 3, 10)
            .unwrap();
        let tight = prompts(300)
            .generation("As a user, I want to log in", &[], 3, 10)
            .unwrap();
        assert!(roomy[1].content.contains("Examples of good test cases"));
        assert!(!tight[1].content.contains("Examples of good test cases"));
        assert!(tight[1].content.contains("As a user, I want to log in"));
    }
}
