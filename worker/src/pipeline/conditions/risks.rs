//! Domain risks: what a tester checks that criteria rarely say. Criteria state the rules of a
//! feature; a QA lead also tries the thing that is not there, the same request twice, the
//! link that has expired, two people changing one record, an amount that needs rounding, an
//! empty list and a dependency that does not answer.
//!
//! Two sources, one shape. [`from_story`] finds them by the words of the story and its
//! criteria, with no model, so the built-in designer has them offline; [`RiskReply`] reads the
//! ones a model adds in one short call per story (the pipeline's `risks` purpose), which knows
//! the domain ("a refund on a payment that was already refunded in full"). A model's risk that
//! says what a derived condition already says is dropped.

use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use storyforge_domain::job::{Criterion, Expect};

use super::clauses::lower_first;
use crate::pipeline::story::StoryParts;

/// A risk before it is numbered as a condition.
#[derive(Debug, Clone, PartialEq)]
pub struct Risk {
    /// The criterion it belongs to, when it belongs to one.
    pub criterion: Option<String>,
    /// The situation to try: "an invoice that does not exist or was deleted".
    pub situation: String,
    pub expect: Expect,
    /// What should happen.
    pub outcome: String,
}

/// Verbs whose object must already exist: acting on one that does not is a risk.
static ACTS_ON_EXISTING: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(download|view|see|open|edit|update|change|delete|remove|cancel|refund|flag|find|look up|access|restore|reactivate|deactivate|export|reschedule|approve|reject|assign|rate|review|reply to|share|track)\b\s+(?P<object>.+)$")
        .expect("valid regex")
});
/// Verbs that create something: doing it twice is a risk.
static CREATES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(create|add|submit|register|sign up for|upload|post|place|book|order|send|import|invite|save|pay for|pay|transfer|schedule|request|issue|record|enter|apply)\b\s+(?P<object>.+)$")
        .expect("valid regex")
});
/// Things that expire.
static EXPIRES: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(reset link|link|token|code|coupon|voucher|invitation|offer|card)s?\b")
        .expect("valid regex")
});
/// Things two people can change at once.
static SHARED_STATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(stock|inventory|seat|seats|balance|room|slot|booking|reservation|record|profile|order|ticket|document|settings)\b")
        .expect("valid regex")
});
/// Money, where rounding can go wrong.
static MONEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)([$€£]\s?\d|\b(price|amount|total|tax|vat|discount|refund|fee)s?\b)")
        .expect("valid regex")
});
/// Lists that can be empty.
static LISTS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(search results|results|list|cart|inbox|feed|report|export|history|suggestions)\b",
    )
    .expect("valid regex")
});
/// Dependencies that can fail, and how a step names them.
const DEPENDENCIES: &[(&str, &str)] = &[
    ("e-mail", "the e-mail service"),
    ("email", "the e-mail service"),
    ("sms", "the SMS gateway"),
    ("text message", "the SMS gateway"),
    ("payment", "the payment provider"),
    ("bank", "the bank"),
    ("identity provider", "the identity provider"),
    ("upload", "the file storage"),
    ("storage", "the file storage"),
    ("push notification", "the push notification service"),
    ("third-party", "the third-party service"),
    ("gateway", "the gateway"),
];

/// Most risks found without a model: more for a story whose criteria say little.
pub fn wanted(criteria: usize) -> usize {
    match criteria {
        0 => 5,
        1..=3 => 3,
        _ => 2,
    }
}

/// Feature heuristics from the test designer's checklist: a kind of feature, named by the
/// words of its goal or story, and what a tester always tries on it.
const FEATURES: &[(&str, &str, Expect, &str)] = &[
    // (the feature's words, the situation a tester tries, its expected outcome)
    (
        r"\b(upload|attach|import)\w*",
        "a file of a type that is not supported",
        Expect::Refused,
        "it is refused with a message naming the supported types, and nothing is stored",
    ),
    (
        r"\b(upload|attach|import)\w*",
        "a file larger than the size limit",
        Expect::Refused,
        "it is refused with a message naming the size limit, and nothing is stored",
    ),
    (
        r"\bpasswords?\b",
        "a new password that breaks the password rules (too short or too simple)",
        Expect::Refused,
        "it is refused with a message stating the password rules",
    ),
    (
        r"\b(log ?in|sign ?in|logs in|signs in|logging in|signing in)\b",
        "a wrong password",
        Expect::Refused,
        "sign-in is refused without saying which part was wrong",
    ),
    (
        r"\b(reset|verif\w*|confirm\w*|invit\w*|activat\w*)\b",
        "a link that has expired or was already used",
        Expect::Refused,
        "it is refused with a message saying so and a way to get a new link",
    ),
    (
        r"\b(search|filter|find|look up)\b",
        "input the search cannot use (letters in a number field, a minimum above the maximum)",
        Expect::Refused,
        "the input is refused with a message saying what is wrong, and no results are changed",
    ),
    (
        r"\b(pay|payment|checkout|card)\b",
        "a card that the bank declines",
        Expect::Refused,
        "the decline is shown, nothing is charged, and the order can be paid again",
    ),
    (
        r"\b(book|schedul\w*|appointment|reserv\w*)\b",
        "a date in the past",
        Expect::Refused,
        "it is refused with a message asking for a future date",
    ),
    (
        r"\b(email address|e-mail address|phone number|by email|by e-mail)\b",
        "a malformed email address",
        Expect::Refused,
        "it is refused with a message naming the malformed address",
    ),
];

/// [`FEATURES`]' patterns, compiled once.
static FEATURE_RULES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    FEATURES
        .iter()
        .map(|(pattern, ..)| Regex::new(&format!("(?i){pattern}")).expect("valid regex"))
        .collect()
});

/// [`DEPENDENCIES`]' words as whole-word patterns, compiled once.
static DEPENDENCY_RULES: LazyLock<Vec<Regex>> = LazyLock::new(|| {
    DEPENDENCIES
        .iter()
        .map(|(word, _)| Regex::new(&format!(r"\b{}", regex::escape(word))).expect("valid regex"))
        .collect()
});

/// Actions with an inverse, and the inverse a tester tries after them (state transitions).
const INVERSES: &[(&str, &str)] = &[
    ("flag", "unflag it"),
    ("follow", "unfollow it"),
    ("subscribe", "unsubscribe"),
    ("mute", "unmute it"),
    ("pin", "unpin it"),
    ("archive", "restore it from the archive"),
    ("deactivate", "reactivate it"),
    ("disable", "enable it again"),
    ("lock", "unlock it"),
    ("block", "unblock it"),
    ("turn on", "turn it off again"),
    ("enable", "disable it again"),
    ("like", "take the like back"),
    ("favourite", "remove it from the favourites"),
    ("bookmark", "remove the bookmark"),
];

/// The risks the story's words point at, at most `limit`, those its goal names first.
pub fn from_story(
    parts: &StoryParts,
    story: &str,
    criteria: &[Criterion],
    limit: usize,
) -> Vec<Risk> {
    let all_text = criteria
        .iter()
        .fold(story.to_string(), |all, c| all + "\n" + &c.text);
    let goal = parts.goal.trim();
    let (mut risks, from_text) = feature_risks(goal, &all_text);
    risks.extend(goal_risks(goal, &parts.role));
    risks.extend(from_text);
    risks.extend(text_risks(&all_text, &parts.role));
    risks.truncate(limit);
    risks
}

/// A risk of the story as a whole.
fn risk(situation: String, expect: Expect, outcome: String) -> Risk {
    Risk {
        criterion: None,
        situation,
        expect,
        outcome,
    }
}

/// The feature checklist's risks: those the goal names, then those the rest of the text does.
fn feature_risks(goal: &str, all_text: &str) -> (Vec<Risk>, Vec<Risk>) {
    let mut from_goal = Vec::new();
    let mut from_text = Vec::new();
    for (rule, (_, situation, expect, outcome)) in FEATURE_RULES.iter().zip(FEATURES) {
        let found = risk(situation.to_string(), *expect, outcome.to_string());
        // A sign-in, link or card risk belongs to a story about signing in, following a link
        // or paying, not to one whose page has a login link, whose header is called
        // "X-RateLimit-Reset" or whose form sits on the checkout page.
        let goal_only = ["password", "sign", "link", "card"]
            .iter()
            .any(|word| situation.contains(word));
        if rule.is_match(goal) {
            from_goal.push(found);
        } else if !goal_only && rule.is_match(all_text) {
            from_text.push(found);
        }
    }
    (from_goal, from_text)
}

/// The risks of what the goal does: undoing it, acting on something gone, creating (bad input,
/// a double submit), changing shared state at once.
fn goal_risks(goal: &str, role: &str) -> Vec<Risk> {
    let mut from_goal = Vec::new();
    let goal_lower = goal.to_lowercase();
    if let Some((verb, inverse)) = INVERSES
        .iter()
        .find(|(verb, _)| goal_lower == *verb || goal_lower.starts_with(&format!("{verb} ")))
    {
        // "turn on" → "turn it on".
        let done = match verb.split_once(' ') {
            Some((verb, particle)) => format!("{verb} it {particle}"),
            None => format!("{verb} it"),
        };
        from_goal.push(risk(
            format!("after they {done}, they {inverse}"),
            Expect::Accepted,
            format!("it can be undone: after they {inverse}, it is as before"),
        ));
    }
    if let Some(found) = ACTS_ON_EXISTING.captures(goal) {
        let object = object_of(&found["object"]);
        from_goal.push(risk(
            format!("{object} that does not exist or was deleted"),
            Expect::Refused,
            format!("the {role} is told it was not found, and nothing else is shown or changed"),
        ));
    }
    if let Some(found) = CREATES.captures(goal) {
        let request = lower_first(goal).trim_end_matches('.').to_string();
        // What a form is sent with: every field a tester leaves empty or fills wrongly.
        from_goal.push(risk(
            format!("the request to {request} with required input missing or malformed"),
            Expect::Refused,
            "it is refused with a message naming each problem, and nothing is changed".to_string(),
        ));
        let object = object_of(&found["object"]);
        from_goal.push(risk(
            format!("the same request to {request} sent twice (a double click or a retry)"),
            Expect::Other,
            format!(
                "only one result ({}), and the second request creates no duplicate",
                object
                    .split_once(' ')
                    .map_or(object.as_str(), |(_, noun)| noun)
            ),
        ));
    }
    if let Some(found) = SHARED_STATE.find(goal) {
        let noun = found.as_str().to_lowercase();
        from_goal.push(risk(
            format!("two users change the same {noun} at the same moment"),
            Expect::Other,
            "one change wins and the other user is told, no change is silently lost".to_string(),
        ));
    }
    from_goal
}

/// The risks the whole text points at: an expiry it does not mention, a dependency that does not
/// answer, money's fractions, an empty list.
fn text_risks(all_text: &str, role: &str) -> Vec<Risk> {
    let mut from_text = Vec::new();
    if let Some(found) = EXPIRES.find(all_text) {
        let noun = found
            .as_str()
            .to_lowercase()
            .trim_end_matches('s')
            .to_string();
        if !all_text.to_lowercase().contains("expir") {
            from_text.push(risk(
                format!("an expired {noun}"),
                Expect::Refused,
                format!("the expired {noun} is refused with a message saying so"),
            ));
        }
    }
    let lower = all_text.to_lowercase();
    if let Some((_, (_, dependency))) = DEPENDENCY_RULES
        .iter()
        .zip(DEPENDENCIES)
        .find(|(rule, _)| rule.is_match(&lower))
    {
        from_text.push(risk(
            format!("{dependency} does not answer"),
            Expect::Other,
            format!("nothing is lost: the {role} is told, or it is retried later"),
        ));
    }
    if MONEY.is_match(all_text) {
        from_text.push(risk(
            "an amount with a fraction of a cent, such as 10.005".to_string(),
            Expect::Other,
            "the amount is rounded to the cent the same way everywhere it is shown and charged"
                .to_string(),
        ));
    }
    if let Some(found) = LISTS.find(all_text) {
        let noun = found.as_str().to_lowercase();
        from_text.push(risk(
            format!("nothing to show: the {noun} would be empty"),
            Expect::Other,
            format!("an empty {noun} is shown with a message, not an error or a blank page"),
        ));
    }
    from_text
}

/// "their invoices for last year" → "an invoice"-like object words: the goal's object up to a
/// preposition, without possessives.
fn object_of(rest: &str) -> String {
    const STOP: &[&str] = &[
        "so", "to", "for", "from", "by", "with", "in", "on", "at", "into", "when", "without",
        "and", "or", "while", "of",
    ];
    let words: Vec<&str> = rest
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-'))
        .filter(|w| {
            !matches!(
                w.to_lowercase().as_str(),
                "their" | "a" | "an" | "the" | "my" | "our" | "some" | "all"
            )
        })
        .take_while(|w| !STOP.contains(&w.to_lowercase().as_str()))
        .take(3)
        .collect();
    let Some((last, rest)) = words.split_last() else {
        return "an item".to_string();
    };
    let singular = match last.strip_suffix('s') {
        Some(stem) if stem.len() > 2 && !stem.ends_with('s') => stem,
        _ => last,
    };
    let phrase = rest
        .iter()
        .chain(std::iter::once(&singular))
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let article = if phrase.starts_with(|c: char| "aeiouAEIOU".contains(c)) {
        "an"
    } else {
        "a"
    };
    format!("{article} {phrase}")
}

/// The model's answer to the risks question.
#[derive(Debug, Clone, Deserialize)]
pub struct RiskReply {
    pub risks: Vec<ModelRisk>,
}

/// One risk as the model wrote it.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelRisk {
    pub situation: String,
    pub expect: String,
    pub outcome: String,
    #[serde(default)]
    pub criterion: Option<String>,
}

impl RiskReply {
    /// The risks of a reply, kept only when they read as a situation and an outcome, their
    /// criterion one of the story's.
    pub fn risks(self, criteria: &[Criterion]) -> Vec<Risk> {
        self.risks
            .into_iter()
            .filter(|r| r.situation.split_whitespace().count() >= 3 && r.outcome.len() >= 8)
            .map(|r| Risk {
                criterion: r
                    .criterion
                    .filter(|id| criteria.iter().any(|c| &c.id == id)),
                situation: super::clauses::tidy(&r.situation),
                expect: match r.expect.as_str() {
                    "accepted" => Expect::Accepted,
                    "refused" => Expect::Refused,
                    _ => Expect::Other,
                },
                outcome: super::clauses::tidy(&r.outcome),
            })
            .collect()
    }
}

/// The schema of the risks question: exactly `count` risks, each a situation, the kind of
/// outcome, the outcome and the criterion it belongs to (or "none").
pub fn schema(count: u32, criteria: &[Criterion]) -> serde_json::Value {
    let mut ids: Vec<String> = criteria.iter().map(|c| c.id.clone()).collect();
    ids.push("none".to_string());
    serde_json::json!({
        "type": "object",
        "properties": {
            "risks": {
                "type": "array",
                "minItems": count,
                "maxItems": count,
                "items": {
                    "type": "object",
                    "properties": {
                        "situation": {"type": "string", "minLength": 10, "maxLength": 160},
                        "expect": {"type": "string", "enum": ["accepted", "refused", "other"]},
                        "outcome": {"type": "string", "minLength": 10, "maxLength": 200},
                        "criterion": {"type": "string", "enum": ids},
                    },
                    "required": ["situation", "expect", "outcome", "criterion"],
                    "additionalProperties": false,
                }
            }
        },
        "required": ["risks"],
        "additionalProperties": false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::story::parts;

    #[test]
    fn a_story_about_existing_things_risks_not_found_and_expiry() {
        let story = "As a premium member, I want to download invoices so that I can keep records";
        let risks = from_story(&parts(story), story, &[], 5);
        let situations: Vec<&str> = risks.iter().map(|r| r.situation.as_str()).collect();
        assert_eq!(
            situations,
            ["an invoice that does not exist or was deleted"]
        );
    }

    #[test]
    fn a_word_in_passing_brings_no_link_or_card_risk() {
        let story = "As a developer integrating with the payment gateway, I want rate-limit responses so that I can back off";
        let criteria = [Criterion {
            id: "AC1".into(),
            text: "Every response carries X-RateLimit-Reset".into(),
        }];
        let risks = from_story(&parts(story), story, &criteria, 5);
        assert!(
            risks
                .iter()
                .all(|r| !r.situation.contains("card") && !r.situation.contains("link")),
            "{risks:?}"
        );
        let story = "As a shopper, I want to pay for my order by card so that I can check out";
        let risks = from_story(&parts(story), story, &[], 5);
        assert!(
            risks.iter().any(|r| r.situation.contains("card")),
            "{risks:?}"
        );
    }

    #[test]
    fn creating_risks_a_duplicate_and_a_failing_dependency() {
        let story = "As a seller, I want to upload product images so that customers can see them";
        let risks = from_story(&parts(story), story, &[], 5);
        assert_eq!(risks[0].situation, "a file of a type that is not supported");
        assert!(
            risks.iter().any(|r| r.situation.contains("sent twice")),
            "{risks:?}"
        );
        assert!(
            risks
                .iter()
                .any(|r| r.situation == "the file storage does not answer"),
            "{risks:?}"
        );
    }
}
