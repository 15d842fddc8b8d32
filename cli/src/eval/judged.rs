//! The judged must-cover check: whether a job's cases cover a must-cover phrase, by meaning
//! rather than by words. Beside the strict rule ([`super::must_cover`]), which needs the
//! phrase's own words and so misses a case that says "transferred" for "moved", a judge model —
//! configured apart from the generator (`STORYFORGE_EVAL_JUDGE_*` or `--judge-*`), so a model
//! does not mark its own work — sees the phrase and the few cases that are most like it, and
//! answers the id of the case that tests it or "none", through an enum schema that allows
//! nothing else.
//!
//! The candidates are the [`CANDIDATES`] cases sharing most of the phrase's words (stemmed,
//! as the strict rule reads them), ties broken by the character trigrams they share, so that a
//! case in other words still reaches the judge. A judge that fails or answers outside the
//! schema is an error for that phrase, never a "none".
//!
//! The check is calibrated against a reading by hand ([`Agreement`]): Cohen's κ between the
//! judge's covered / not covered and a person's, over every phrase both read.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::json;
use storyforge_domain::job::TestCase;
use storyforge_domain::words::content_tokens;
use storyforge_llm::{ChatMessage, ChatRequest, ProviderChain, ProviderSettings};

use super::must_cover::case_text;

/// Cases shown to the judge for one phrase.
pub const CANDIDATES: usize = 4;

/// The judge of must-cover phrases.
pub struct CoverJudge {
    chain: ProviderChain,
    model: String,
}

const SYSTEM: &str =
    "You are a QA lead checking whether test cases test a requirement. You answer with JSON only.";

impl CoverJudge {
    pub fn new(settings: ProviderSettings) -> anyhow::Result<CoverJudge> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("storyforge-eval/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the judge's HTTP client")?;
        Ok(CoverJudge {
            model: settings.model.clone(),
            chain: ProviderChain::new(vec![settings], http),
        })
    }

    /// The judge's model, as the report names it.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The id of the case among `cases` that tests `phrase` of `story`, or `None`; an error when
    /// the judge could not answer.
    pub async fn judge(
        &self,
        story: &str,
        phrase: &str,
        cases: &[TestCase],
    ) -> Result<Option<String>, String> {
        let shown = candidates(phrase, cases);
        if shown.is_empty() {
            return Ok(None);
        }
        let mut ids: Vec<String> = shown.iter().map(|c| c.id.clone()).collect();
        let listing: String = shown
            .iter()
            .map(|c| {
                format!(
                    "{}: {}\n  Given {}\n  When {}\n  Then {}\n",
                    c.id, c.title, c.given, c.when, c.then
                )
            })
            .collect();
        let user = format!(
            "User story: {story}\n\nRequirement a QA lead expects to be tested: \"{phrase}\"\n\nTest cases:\n{listing}\nWhich test case tests this requirement: it tries the situation the requirement names and checks the outcome it implies? A case that tests something else, only mentions it, or expects the opposite outcome does not count. Answer {{\"case\": \"<id>\"}} with one of {}, or {{\"case\": \"none\"}}.",
            ids.join(", ")
        );
        ids.push("none".to_string());
        let request = ChatRequest {
            messages: vec![ChatMessage::system(SYSTEM), ChatMessage::user(user)],
            json_schema: Some(json!({
                "type": "object",
                "properties": {"case": {"type": "string", "enum": ids}},
                "required": ["case"],
                "additionalProperties": false,
            })),
            schema_name: "covered_by".into(),
            max_tokens: 20,
            temperature: 0.0,
            model: None,
        };
        let reply = self
            .chain
            .chat(&request)
            .await
            .map_err(|e| format!("the judge failed: {e}"))?;
        read_answer(&reply.text, &ids)
    }
}

/// The case id of an answer, `None` for "none"; an error for anything else.
fn read_answer(reply: &str, allowed: &[String]) -> Result<Option<String>, String> {
    let value: serde_json::Value = serde_json::from_str(reply.trim())
        .map_err(|_| format!("the judge's answer is not JSON: {reply:?}"))?;
    let answer = value["case"]
        .as_str()
        .ok_or_else(|| format!("the judge's answer has no case: {reply:?}"))?;
    if !allowed.iter().any(|a| a == answer) {
        return Err(format!(
            "the judge answered {answer:?}, not one of the cases shown"
        ));
    }
    Ok((answer != "none").then(|| answer.to_string()))
}

/// The cases most like `phrase`: most of its words first, then most shared trigrams.
pub fn candidates<'a>(phrase: &str, cases: &'a [TestCase]) -> Vec<&'a TestCase> {
    let wanted = content_tokens(phrase);
    let grams = trigrams(phrase);
    let mut scored: Vec<(usize, f64, usize, &TestCase)> = cases
        .iter()
        .enumerate()
        .map(|(index, case)| {
            let text = case_text(case);
            let have: HashSet<String> = content_tokens(&text).into_iter().collect();
            let words = wanted.iter().filter(|w| have.contains(*w)).count();
            let theirs = trigrams(&text);
            let shared = grams.intersection(&theirs).count() as f64 / grams.len().max(1) as f64;
            (words, shared, index, case)
        })
        .collect();
    scored.sort_by(|a, b| b.0.cmp(&a.0).then(b.1.total_cmp(&a.1)).then(a.2.cmp(&b.2)));
    scored
        .into_iter()
        .take(CANDIDATES)
        .map(|(_, _, _, case)| case)
        .collect()
}

fn trigrams(text: &str) -> HashSet<String> {
    let chars: Vec<char> = text.to_lowercase().chars().collect();
    chars.windows(3).map(|w| w.iter().collect()).collect()
}

/// How far the judge agrees with a reading by hand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// The labels file.
    pub labels: String,
    /// Phrases both the judge and the person read.
    pub phrases: usize,
    /// Share of those where they agree (covered or not).
    pub agree: f64,
    /// Cohen's κ of the judged check against the person.
    pub kappa: f64,
    /// Cohen's κ of the strict rule against the person, for comparison.
    pub strict_kappa: f64,
    /// Covered by the person's reading and by the judge, of the phrases read.
    pub covered_by_hand: usize,
    pub covered_judged: usize,
}

/// Hand labels: `(story id, phrase)` → covered, from a TSV with a header and the columns `id`,
/// `must_cover`, …, `read_by_hand` (covered when `covered` or `covered_other_words`).
pub fn read_labels(path: &Path) -> anyhow::Result<HashMap<(String, String), bool>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| anyhow!("{} has no {name} column", path.display()))
    };
    let (id, phrase, label) = (
        column("id")?,
        column("must_cover")?,
        column("read_by_hand")?,
    );
    let mut labels = HashMap::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('\t').collect();
        let (Some(i), Some(p), Some(l)) = (fields.get(id), fields.get(phrase), fields.get(label))
        else {
            bail!("{} line {}: too few columns", path.display(), n + 2);
        };
        let covered = matches!(*l, "covered" | "covered_other_words");
        labels.insert((i.to_string(), p.to_string()), covered);
    }
    Ok(labels)
}

/// Cohen's κ of two raters' yes/no answers over the same items.
pub fn cohen_kappa(pairs: &[(bool, bool)]) -> f64 {
    let n = pairs.len() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let agree = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let a_yes = pairs.iter().filter(|(a, _)| *a).count() as f64 / n;
    let b_yes = pairs.iter().filter(|(_, b)| *b).count() as f64 / n;
    let chance = a_yes * b_yes + (1.0 - a_yes) * (1.0 - b_yes);
    if (1.0 - chance).abs() < f64::EPSILON {
        return 1.0;
    }
    (agree - chance) / (1.0 - chance)
}

#[cfg(test)]
mod tests {
    use storyforge_domain::job::Priority;

    use super::*;

    fn case(id: &str, title: &str, then: &str) -> TestCase {
        TestCase {
            id: id.into(),
            title: title.into(),
            priority: Priority::High,
            given: "a registered user".into(),
            when: "the user acts".into(),
            then: then.into(),
            covers: vec![],
            condition: None,
            origin: None,
        }
    }

    #[test]
    fn candidates_are_the_cases_most_like_the_phrase() {
        let cases = [
            case("TC_001", "Successful sign-in", "the dashboard is shown"),
            case(
                "TC_002",
                "Reset link older than 30 minutes",
                "the expired link is refused",
            ),
            case("TC_003", "Profile photo upload", "the photo is saved"),
            case("TC_004", "Wrong password", "sign-in is refused"),
            case("TC_005", "Logout", "the session ends"),
        ];
        let shown: Vec<&str> = candidates("expired reset link", &cases)
            .iter()
            .map(|c| c.id.as_str())
            .collect();
        assert_eq!(shown.len(), CANDIDATES);
        assert_eq!(shown[0], "TC_002");
    }

    #[test]
    fn an_answer_outside_the_cases_shown_is_an_error_not_a_none() {
        let allowed = vec!["TC_002".to_string(), "none".to_string()];
        assert_eq!(
            read_answer(r#"{"case": "TC_002"}"#, &allowed),
            Ok(Some("TC_002".into()))
        );
        assert_eq!(read_answer(r#"{"case": "none"}"#, &allowed), Ok(None));
        assert!(read_answer(r#"{"case": "TC_009"}"#, &allowed).is_err());
        assert!(read_answer("TC_002", &allowed).is_err());
    }

    #[test]
    fn kappa_is_one_for_agreement_and_zero_for_chance() {
        assert_eq!(cohen_kappa(&[(true, true), (false, false)]), 1.0);
        let chance = [(true, true), (true, false), (false, true), (false, false)];
        assert!(cohen_kappa(&chance).abs() < 1e-9);
    }
}
