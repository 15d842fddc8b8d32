//! A criterion read the way a test designer reads it: its clauses (each a promise a case can
//! check on its own), the other branch of every "if", "unless", "otherwise", "except" and "only
//! when", the alternatives of a refusal ("an invalid or expired cursor"), whether it promises a
//! refusal, and the rule it states that input can break.
//!
//! Everything here is plain pattern work on English text, written from test-design technique:
//! clauses split at `;`, at sentence ends and at "and"/"but" when a verb follows, so that "the
//! order is saved and a confirmation e-mail is sent" is two promises while "name and e-mail
//! are required" stays one.

use std::sync::LazyLock;

use regex::Regex;

/// A criterion written as a Given/When/Then scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub given: Option<String>,
    pub when: Option<String>,
    pub then: String,
}

/// The other branch of a conditional clause.
#[derive(Debug, Clone, PartialEq)]
pub struct Branch {
    /// The situation of the branch the clause states: "the bank requires 3-D Secure".
    pub stated: String,
    /// What happens in it: "the shopper is sent to the verification step".
    pub main: String,
    /// The situation of the other branch: "the bank does not require 3-D Secure".
    pub situation: String,
    /// What happens then, when the text says: "503"; `None` when it only says what does not.
    pub outcome: Option<String>,
}

/// Verbs and auxiliaries that make the words after "and" a clause of their own.
pub const VERBS: &[&str] = &[
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "can",
    "cannot",
    "can't",
    "must",
    "may",
    "should",
    "will",
    "won't",
    "gets",
    "get",
    "has",
    "have",
    "shows",
    "show",
    "sends",
    "send",
    "receives",
    "receive",
    "returns",
    "return",
    "appears",
    "appear",
    "moves",
    "opens",
    "closes",
    "ends",
    "expires",
    "lists",
    "keeps",
    "marks",
    "requires",
    "needs",
    "asks",
    "gives",
    "contains",
    "includes",
    "sees",
    "see",
    "stays",
    "remains",
    "goes",
    "becomes",
    "starts",
    "stops",
    "runs",
    "lands",
    "updates",
    "update",
    "resets",
    "creates",
    "deletes",
    "removes",
    "adds",
    "displays",
    "notifies",
    "uses",
    "takes",
    "counts",
    "changes",
    "switches",
    "falls",
    "rejects",
    "refuses",
    "accepts",
    "allows",
    "prevents",
    "records",
    "logs",
    "stores",
    "saves",
    "redirects",
    "triggers",
    "fails",
    "succeeds",
    "does",
    "do",
    "did",
    "never",
    "no",
    "cancels",
    "confirms",
    "reports",
    "applies",
    "expire",
    "end",
    "work",
    "works",
    "lose",
    "loses",
    "run",
    "go",
];

/// Words after which a clause promises a refusal.
static REFUSAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)\b(
            reject\w* | refus\w* | declin\w* | den(y|ies|ied) | forbid\w* | cannot | can't
          | can\ not | not\ (be\ )?(allowed|permitted|accepted|possible|able) | unable | blocked
          | sends\ nothing | nothing\ is\ (sent|saved|created|changed|charged)
          | errors? | invalid\w* | locked | lock | disabled | prevent\w* | cancels?
          | (returns?|status|code|http|gets?|answers?|with)\ [45]\d\d
          | cancell?ed | no\ longer | is\ not\ (saved|sent|created|processed)
        )\b",
    )
    .expect("valid regex")
});
/// An error under negation is no refusal: "no error summary is shown".
static NEGATED_ERROR: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(no|without|zero|never)\s+(\w+\s+)?(errors?|invalid\w*|rejections?)\b")
        .expect("valid regex")
});
/// A refusal denied: "the login is not refused", "the account isn't locked".
static DENIED_REFUSAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?ix)\b((is|are|was|were|gets?|been)\s+(not|never)|isn't|aren't|wasn't|weren't)\s+
        (reject\w*|refus\w*|declin\w*|denied|blocked|locked|disabled|cancell?ed|prevented)\b",
    )
    .expect("valid regex")
});
/// Words after which a clause promises neither plain success nor refusal, but another path.
static OTHER_PATH: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?i)\b(instead|falls? back|fallback|warning|warns?|asks?|prompts?|redirect\w*|in the background|queued|retried|marked|skipped|still)\b",
    )
    .expect("valid regex")
});
static GWT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)\b(given|when|then)\b").expect("valid regex"));

/// Whether `text` promises that something is refused, blocked or fails.
pub fn reads_refusal(text: &str) -> bool {
    let without_negated = NEGATED_ERROR.replace_all(text, "");
    let without_negated = DENIED_REFUSAL.replace_all(&without_negated, "");
    REFUSAL.is_match(&without_negated)
}

/// Whether `text` says in so many words that something is not refused: "the login is not
/// refused".
pub fn denies_refusal(text: &str) -> bool {
    DENIED_REFUSAL.is_match(text)
}

/// A clause without its subordinate clauses where its main clause is known to be elsewhere:
/// after them ("the customer receives an email as soon as the account is locked") or behind
/// their comma ("If …, the shopper is sent …"). What a clause promises is read from it: the
/// lock is the trigger, not the outcome.
pub fn main_clause(text: &str) -> String {
    let mut main = text.to_string();
    for found in SUBORDINATE
        .find_iter(text)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
    {
        if found.start() > 0 || text[found.end()..].starts_with(',') {
            main.replace_range(found.range(), "");
        }
    }
    main
}

/// The trigger of a clause that says when its promise applies: "as soon as the account is
/// locked" → "the account is locked".
pub fn trigger(text: &str) -> Option<String> {
    static TRIGGER: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(as soon as|whenever|when|once)\s+(?P<trigger>[^,;]{8,})$")
            .expect("valid regex")
    });
    TRIGGER
        .captures(text)
        .map(|found| tidy(&found["trigger"]))
        .filter(|t| t.split_whitespace().count() >= 3)
}

static SUBORDINATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(as soon as|when|whenever|once|if|after|because|while|until|before)\b[^,;]*")
        .expect("valid regex")
});

/// Whether `text` promises another path: a fallback, a warning, a retry, a background run.
pub fn reads_other_path(text: &str) -> bool {
    OTHER_PATH.is_match(text)
}

/// The criterion as a Given/When/Then scenario, when it starts "Given" or "When" and has a
/// "then".
pub fn scenario(text: &str) -> Option<Scenario> {
    let marks: Vec<(String, usize, usize)> = GWT
        .find_iter(text)
        .map(|m| (m.as_str().to_lowercase(), m.start(), m.end()))
        .collect();
    let first = marks.first()?;
    if first.1 > 0 || first.0 == "then" || !marks.iter().any(|(k, _, _)| k == "then") {
        return None;
    }
    let part = |keyword: &str| -> Option<String> {
        let index = marks.iter().position(|(k, _, _)| k == keyword)?;
        let start = marks[index].2;
        let end = marks.get(index + 1).map_or(text.len(), |(_, s, _)| *s);
        Some(tidy(&text[start..end])).filter(|p| !p.is_empty())
    };
    Some(Scenario {
        given: part("given"),
        when: part("when"),
        then: part("then")?,
    })
}

/// The clauses of a criterion in prose, each a promise of its own.
pub fn split(text: &str) -> Vec<String> {
    let mut clauses = Vec::new();
    for sentence in text.split([';', '\n']).flat_map(sentences) {
        let mut rest = sentence.trim().to_string();
        while let Some((left, right)) = split_at_conjunction(&rest) {
            clauses.push(tidy(&left));
            rest = right;
        }
        clauses.push(tidy(&rest));
    }
    clauses.retain(|c| c.split_whitespace().count() >= 2);
    clauses
}

/// Sentences of a text: split at ". " followed by a capital letter, but not after an
/// abbreviation ("e.g. EUR 50"), inside brackets, or inside a quoted message ("sees 'Your
/// account has been deactivated. Contact your administrator.'").
fn sentences(text: &str) -> Vec<&str> {
    static END: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\.\s+[A-Z]").expect("valid regex"));
    const ABBREVIATIONS: &[&str] = &[
        "e.g", "i.e", "etc", "vs", "approx", "min", "max", "no", "incl", "excl", "cf", "mr", "ms",
        "dr",
    ];
    let mut parts = Vec::new();
    let mut start = 0;
    for found in END.find_iter(text) {
        let word = text[..found.start()]
            .rsplit(|c: char| c.is_whitespace() || c == '(')
            .next()
            .unwrap_or_default()
            .to_lowercase();
        let bracketed =
            text[..found.start()].matches('(').count() > text[..found.start()].matches(')').count();
        if ABBREVIATIONS.contains(&word.as_str()) || bracketed || quoted_at(text, found.start()) {
            continue;
        }
        parts.push(&text[start..found.start()]);
        start = found.end() - 1;
    }
    parts.push(&text[start..]);
    parts
}

/// Whether byte `at` of `text` is inside quotes: a `"`, or a `'` that opens after a space or a
/// bracket (an apostrophe inside a word opens nothing), not closed before it.
fn quoted_at(text: &str, at: usize) -> bool {
    let mut open: Option<char> = None;
    let mut previous = ' ';
    for (i, c) in text.char_indices() {
        if i >= at {
            break;
        }
        match (open, c) {
            (None, '"') => open = Some('"'),
            (None, '\'' | '‘') if previous.is_whitespace() || "([{:".contains(previous) => {
                open = Some('\'')
            }
            (Some('"'), '"') => open = None,
            (Some('\''), '\'' | '’') => {
                let next = text[i + c.len_utf8()..].chars().next().unwrap_or(' ');
                if !next.is_alphanumeric() {
                    open = None;
                }
            }
            _ => {}
        }
        previous = c;
    }
    open.is_some()
}

/// A clause that says how the user is told.
static TELLS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(sees?|shows?|is shown|are shown|is told|gets? the message|displays?)\b.{0,40}\b(message|error|notice|warning)|\bmessage\b")
        .expect("valid regex")
});

/// A clause that says something stays as it was.
static UNCHANGED: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\b(does not change|do not change|unchanged|remains?|stays?|is kept|are kept|nothing (is|else))\b")
        .expect("valid regex")
});

/// The first place `text` joins two clauses with "and" or "but": both sides at least three
/// words, and a verb in the first five words after it.
fn split_at_conjunction(text: &str) -> Option<(String, String)> {
    static JOIN: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"(?i),?\s+(and|but)\s+").expect("valid regex"));
    for found in JOIN.find_iter(text) {
        let left = &text[..found.start()];
        let right = &text[found.end()..];
        if left.split_whitespace().count() < 3 || right.split_whitespace().count() < 3 {
            continue;
        }
        // "… but whose response got lost is not created twice": a relative clause, not a
        // clause of its own.
        let first = right
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_lowercase();
        if matches!(
            first.as_str(),
            "whose" | "which" | "who" | "that" | "where" | "whom"
        ) {
            continue;
        }
        let is_verb = |w: &str| {
            let w = w
                .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'')
                .to_lowercase();
            VERBS.contains(&w.as_str())
        };
        // "… shows 'This code is not valid' and the total does not change": what stays as it was
        // is part of the same test, not a promise of its own.
        if UNCHANGED.is_match(right) {
            continue;
        }
        // "… cannot log in and sees the message '…'": the message is how the refusal shows.
        if reads_refusal(left) && TELLS.is_match(right) {
            continue;
        }
        // "codes from the previous and next window are accepted": the left side has no verb of
        // its own, so "and" joins two nouns.
        let has_verb =
            right.split_whitespace().take(5).any(is_verb) && left.split_whitespace().any(is_verb);
        // "turned on and off in the player": no verb follows, one clause.
        if has_verb {
            // "codes are shown once and can be downloaded": the second clause takes the
            // first one's subject.
            let starts_with_verb = VERBS.contains(&first.as_str());
            let right = match subject_of(left).filter(|_| starts_with_verb) {
                Some(subject) => format!("{subject} {right}"),
                None => right.to_string(),
            };
            return Some((left.to_string(), right));
        }
    }
    None
}

/// The subject of a clause: its words before the first verb, after any leading phrase that ends
/// in a comma ("After enabling, 10 recovery codes are shown" → "10 recovery codes").
pub fn subject_of(clause: &str) -> Option<String> {
    let main = clause.rsplit(',').next().unwrap_or(clause);
    let words: Vec<&str> = main.split_whitespace().collect();
    let verb = words.iter().position(|w| {
        VERBS.contains(
            &w.to_lowercase()
                .trim_matches(|c: char| !c.is_alphanumeric()),
        )
    })?;
    (verb > 0).then(|| words[..verb].join(" "))
}

/// The other branch of a conditional clause, if it has one.
pub fn branch(clause: &str) -> Option<Branch> {
    static OTHERWISE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?P<main>.+?),?\s+(otherwise|else)\s*,?\s+(?P<other>.+)$")
            .expect("valid regex")
    });
    static UNLESS: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?P<main>.+?),?\s+(unless|except when|except if|except for|except)\s+(?P<cond>.+)$")
            .expect("valid regex")
    });
    static ONLY_WHEN: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?P<main>.+?)\s+only\s+(when|if|after|once)\s+(?P<cond>.+)$")
            .expect("valid regex")
    });
    static IF: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^if\s+(?P<cond>.+?),\s*(then\s+)?(?P<main>.+)$").expect("valid regex")
    });
    if let Some(found) = OTHERWISE.captures(clause) {
        let main = tidy(&found["main"]);
        let (stated, situation, main) =
            match ONLY_WHEN.captures(&main).or_else(|| IF.captures(&main)) {
                Some(inner) => (
                    tidy(&inner["cond"]),
                    negate(&inner["cond"]),
                    tidy(&inner["main"]),
                ),
                None => (main.clone(), format!("not: {main}"), main.clone()),
            };
        return Some(Branch {
            stated,
            main,
            situation,
            outcome: Some(tidy(&found["other"])),
        });
    }
    if let Some(found) = UNLESS.captures(clause) {
        return Some(Branch {
            stated: negate(&found["cond"]),
            main: tidy(&found["main"]),
            situation: tidy(&found["cond"]),
            outcome: Some(negate(&found["main"])),
        });
    }
    let found = ONLY_WHEN.captures(clause).or_else(|| IF.captures(clause))?;
    let main = tidy(&found["main"]);
    // "… the same confirmation as for a known address": the clause compares the branches, so
    // the other branch's outcome is not its negation.
    let compares =
        main.to_lowercase().contains(" same ") || main.to_lowercase().contains(" as for ");
    Some(Branch {
        stated: tidy(&found["cond"]),
        situation: negate(&found["cond"]),
        outcome: (!compares).then(|| negate(&main)),
        main,
    })
}

/// The alternatives of a clause that refuses either of two things: "An invalid or expired cursor
/// returns 400" → "An invalid cursor returns 400", "An expired cursor returns 400". Empty when
/// the clause has none.
pub fn alternatives(clause: &str) -> Vec<String> {
    static PREDICATE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\s(is|are|returns?|gets?|shows?|cannot|can't|must|will|fails?)\s")
            .expect("valid regex")
    });
    if !reads_refusal(clause) {
        return Vec::new();
    }
    let Some(verb) = PREDICATE.find(clause) else {
        return Vec::new();
    };
    let subject = &clause[..verb.start()];
    let predicate = &clause[verb.start()..];
    let Some((left, right)) = subject.split_once(" or ") else {
        return Vec::new();
    };
    let left_words: Vec<&str> = left.split_whitespace().collect();
    let right_words: Vec<&str> = right.split_whitespace().collect();
    if left_words.is_empty() || right_words.is_empty() {
        return Vec::new();
    }
    let determiner = |w: &str| {
        matches!(
            w.to_lowercase().as_str(),
            "a" | "an" | "the" | "any" | "each" | "every"
        )
    };
    let (first, second) = if left_words.len() <= 2 && right_words.len() >= 2 {
        // "An invalid or expired cursor": the head noun is shared at the end.
        let head = right_words[1..].join(" ");
        let first = format!("{left} {head}");
        let second = if determiner(left_words[0]) {
            format!("{} {right}", article_for(left_words[0], right_words[0]))
        } else {
            right.to_string()
        };
        (first, second)
    } else if left_words.len() >= 2 && determiner(left_words[0]) {
        // "An assertion older than 5 minutes or with an invalid signature": the head is shared
        // at the start.
        (
            left.to_string(),
            format!("{} {} {right}", left_words[0], left_words[1]),
        )
    } else {
        (left.to_string(), right.to_string())
    };
    vec![
        tidy(&format!("{first}{predicate}")),
        tidy(&format!("{second}{predicate}")),
    ]
}

/// "a"/"an" before `word`, keeping the determiner otherwise.
fn article_for(determiner: &str, word: &str) -> String {
    let lower = determiner.to_lowercase();
    if lower != "a" && lower != "an" {
        return determiner.to_string();
    }
    let vowel = word
        .chars()
        .next()
        .is_some_and(|c| "aeiouAEIOU".contains(c));
    let article = if vowel { "an" } else { "a" };
    if determiner.starts_with(char::is_uppercase) {
        capitalise(article)
    } else {
        article.to_string()
    }
}

/// A clause negated at its first verb: "the bank requires 3-D Secure" → "the bank does not
/// require 3-D Secure", "the card is valid" → "the card is not valid"; "not: …" when no verb is
/// found.
pub fn negate(clause: &str) -> String {
    let clause = tidy(clause);
    let words: Vec<&str> = clause.split_whitespace().collect();
    // Already negative: the negation comes out ("no email is sent" → "an email is sent",
    // "they have no mentions" → "they have mentions", "is not shown" → "is shown").
    if let Some(at) = words
        .iter()
        .position(|w| matches!(w.to_lowercase().as_str(), "no" | "not" | "never"))
    {
        let mut out: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        let word = out.remove(at);
        if at == 0 && word.eq_ignore_ascii_case("no") && !out.is_empty() {
            let article = article_for("a", &out[0]);
            out.insert(
                0,
                if word.starts_with('N') {
                    capitalise(&article)
                } else {
                    article
                },
            );
        }
        return out.join(" ");
    }
    for (i, word) in words.iter().enumerate() {
        let lower = word.to_lowercase();
        let head = words[..i].join(" ");
        let tail = words[i + 1..].join(" ");
        let join = |middle: String| {
            [head.as_str(), middle.as_str(), tail.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join(" ")
        };
        let after_pronoun = i == 1
            && matches!(
                words[0].to_lowercase().as_str(),
                "they" | "we" | "you" | "i" | "users" | "customers"
            );
        match lower.as_str() {
            "is" | "are" | "was" | "were" | "can" | "must" | "will" | "should" if i > 0 => {
                return join(format!("{word} not"));
            }
            // "has used" is a tense ("has not used"); "has 3 mentions" a possession.
            "has" | "have" if i > 0 && words.get(i + 1).is_some_and(|w| participle(w)) => {
                return join(format!("{word} not"));
            }
            "has" if i > 0 => return join("does not have".to_string()),
            "have" if i > 0 => return join("do not have".to_string()),
            _ if after_pronoun && lower.chars().all(char::is_alphabetic) => {
                return join(format!("do not {lower}"));
            }
            "cannot" | "can't" => return join("can".to_string()),
            _ if i > 0
                && i <= 4
                && lower.len() > 3
                && lower.ends_with('s')
                && !lower.ends_with("ss")
                && VERBS.contains(&lower.as_str()) =>
            {
                let base = lower
                    .strip_suffix("ies")
                    .map(|b| format!("{b}y"))
                    .or_else(|| {
                        lower
                            .strip_suffix("es")
                            .filter(|b| b.ends_with("sh") || b.ends_with("ch"))
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| lower[..lower.len() - 1].to_string());
                return join(format!("does not {base}"));
            }
            _ => {}
        }
    }
    format!("not: {clause}")
}

/// Whether a word reads as a past participle ("used", "been", "chosen").
fn participle(word: &str) -> bool {
    let word = word.to_lowercase();
    word.len() > 3
        && (word.ends_with("ed")
            || word.ends_with("en")
            || matches!(word.as_str(), "paid" | "sent" | "made" | "done" | "set"))
}

/// The input-breaking side of a rule a clause states, if it states one: "The first row must
/// hold the column headers" → "the first row does not hold the column headers"; "email is
/// required" → "email left out or empty"; "only JPEG and PNG files are accepted" → "something
/// other than JPEG or PNG files is accepted"; a scenario's "valid card" → "an invalid card".
pub fn broken_rule(clause: &str) -> Option<String> {
    static MUST: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?P<subject>.+?)\s+must\s+(?P<rest>.+)$").expect("valid regex")
    });
    static REQUIRED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?P<subject>.+?)\s+(is|are)\s+(required|mandatory)\b(?P<rest>.*)$")
            .expect("valid regex")
    });
    static ONLY_ACCEPTED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^only\s+(?P<what>.+?)\s+(is|are|can be|may be)\s+(?P<verb>accepted|allowed|supported|uploaded|used)\b")
            .expect("valid regex")
    });
    static CAN_ONLY: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)^(?P<subject>.+?)\s+can\s+only\s+be\s+(?P<action>.+?)\s+(after|once|when|if)\s+(?P<cond>.+)$")
            .expect("valid regex")
    });
    static VALID: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(a\s+)?valid\s+(?P<noun>[\w-]+)").expect("valid regex")
    });
    // A rule quoted inside a message ("show the error 'Min price must be lower …'") is the
    // message's text, not the clause's rule.
    static QUOTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""[^"]*"|'[^']*'"#).expect("valid regex"));
    let clause = tidy(clause);
    if QUOTED.replace_all(&clause, "").contains("must") != clause.contains("must") {
        return None;
    }
    if let Some(found) = CAN_ONLY.captures(&clause) {
        return Some(format!(
            "{} {} without {} {} first",
            found["subject"].trim(),
            found["action"].trim(),
            "a",
            found["cond"].trim().trim_start_matches("a ")
        ));
    }
    if let Some(found) = ONLY_ACCEPTED.captures(&clause) {
        return Some(format!(
            "something other than {} is {}",
            found["what"].trim().replace(" and ", " or "),
            found["verb"].trim()
        ));
    }
    if let Some(found) = REQUIRED.captures(&clause) {
        return Some(format!(
            "{} left out or empty",
            lower_first(found["subject"].trim())
        ));
    }
    if let Some(found) = MUST.captures(&clause) {
        // "The limit is per key, one noisy key must not affect other keys": the subject is
        // what comes after the last comma.
        let subject = found["subject"]
            .rsplit(',')
            .next()
            .unwrap_or_default()
            .trim();
        let subject = lower_first(subject);
        let rest = found["rest"].trim();
        if let Some(forbidden) = rest.strip_prefix("not ") {
            // Breaking "must not affect" is affecting.
            let (verb, object) = forbidden.split_once(' ').unwrap_or((forbidden, ""));
            let verb = match verb {
                "be" => "is".to_string(),
                "have" => "has".to_string(),
                v if v.ends_with('s') => v.to_string(),
                v => format!("{v}s"),
            };
            return Some(format!("{subject} {verb} {object}").trim().to_string());
        }
        return Some(match rest.strip_prefix("be ") {
            Some(state) => format!("{subject} that is not {state}"),
            None => format!("{subject} does not {rest}"),
        });
    }
    if let Some(found) = VALID.captures(&clause) {
        return Some(format!("an invalid {}", &found["noun"]));
    }
    None
}

/// Whether a clause states that something happens at most once (and does not itself describe
/// the second time).
pub fn states_once(clause: &str) -> bool {
    static ONCE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(only once|at most once|once per|only one|single[- ]use|one[- ]time|unique|first click|only\b.{1,30}\bonce)\b")
            .expect("valid regex")
    });
    static SECOND: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(twice|again|second|already|duplicate\w*)\b").expect("valid regex")
    });
    static AT_ONCE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"(?i)\b(same moment|same time|concurrent\w*|simultaneous\w*)\b")
            .expect("valid regex")
    });
    ONCE.is_match(clause) && !SECOND.is_match(clause) && !AT_ONCE.is_match(clause)
}

/// Whitespace collapsed, trailing punctuation and a leading conjunction removed.
pub fn tidy(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = joined.trim_matches(|c: char| matches!(c, ',' | '.' | ';' | ':' | ' '));
    let lower = trimmed.to_lowercase();
    for lead in ["and ", "but ", "then ", "so "] {
        if lower.starts_with(lead) {
            return trimmed[lead.len()..].to_string();
        }
    }
    trimmed.to_string()
}

pub fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        // Keep acronyms and names as written: "API key", "GET /v1".
        Some(first) if chars.clone().next().is_some_and(char::is_lowercase) => {
            first.to_lowercase().chain(chars).collect()
        }
        _ => text.to_string(),
    }
}

pub fn capitalise(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
