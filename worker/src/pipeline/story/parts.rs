//! Who the story is for and what they want: the role, goal and benefit of "As a … I want …
//! so that …" in its common variants ("I'd like", "I need", "in order to", the benefit first),
//! or "a user" and the first sentence of a story that follows no template. Test conditions
//! name the role (an actor without it), and the designer writes its steps in the third person
//! from the goal.

use std::sync::LazyLock;

use regex::Regex;

/// "As a|an|the <role>, I want|I'd like|I need|I can <goal> [so that|in order to <benefit>]".
static TEMPLATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"(?is)\bas\s+(?:an?|the)?\s*(?P<role>[^,]+?)\s*,?\s+(?:i\s+want(?:\s+to)?|i'?d\s+like(?:\s+to)?|i\s+would\s+like(?:\s+to)?|i\s+need(?:\s+to)?|i\s+can|i\s+should\s+be\s+able\s+to)\s+(?P<goal>.+?)(?:\s*,?\s+(?:so\s+that|in\s+order\s+to|so)\s+(?P<benefit>.+?))?\s*(?:[.\n]|$)",
    )
    .expect("valid regex")
});

/// What the story says about who wants what.
#[derive(Debug, Clone, PartialEq)]
pub struct StoryParts {
    pub role: String,
    pub goal: String,
    pub benefit: Option<String>,
}

/// Role, goal and benefit from the template, or "user" and the first sentence when the story
/// follows none.
pub fn parts(story: &str) -> StoryParts {
    if let Some(found) = TEMPLATE.captures(story) {
        return StoryParts {
            role: clean(&found["role"]),
            goal: third_person(&clean(&found["goal"])),
            benefit: found
                .name("benefit")
                .map(|b| third_person(&clean(b.as_str()))),
        };
    }
    let first = story
        .split(['\n', '.'])
        .map(clean)
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "use the feature".to_string());
    StoryParts {
        role: "user".to_string(),
        goal: first,
        benefit: None,
    }
}

/// "I want to reset my password" → "reset their password": the story's first person as the
/// third person a test step speaks in.
pub fn third_person(text: &str) -> String {
    static FIRST_PERSON: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\b(I am|I'm|I|me|my|mine|myself)\b").expect("valid regex"));
    FIRST_PERSON
        .replace_all(text, |c: &regex::Captures| {
            match &c[1] {
                "I am" | "I'm" => "they are",
                "I" => "they",
                "me" => "them",
                "my" => "their",
                "mine" => "theirs",
                _ => "themselves",
            }
            .to_string()
        })
        .into_owned()
}

fn clean(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .trim_matches(|c: char| c == ',' || c == '.' || c == ';' || c == ':')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_and_its_variants_are_read() {
        let found = parts(
            "As a registered customer, I want to reset my password so that I can get back into my account.",
        );
        assert_eq!(found.role, "registered customer");
        assert_eq!(found.goal, "reset their password");
        assert_eq!(
            found.benefit.as_deref(),
            Some("they can get back into their account")
        );
        let found = parts("As an admin I'd like to export users in order to audit them");
        assert_eq!(
            (found.role.as_str(), found.goal.as_str()),
            ("admin", "export users")
        );
        let found = parts("Export invoices to CSV.\nFinance needs them monthly.");
        assert_eq!(
            (found.role.as_str(), found.goal.as_str()),
            ("user", "Export invoices to CSV")
        );
    }
}
