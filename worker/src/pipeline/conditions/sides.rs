//! The two sides of a limit a clause states, by its comparator: the far side (just past it) and
//! the near side (at it), each with what it expects — refused, accepted, or the rule applying.
//! "up to 20" gives 21 refused and 20 accepted; "above $500" $500.01 taking the rule and $500
//! not; "at least 3" 2 short; "after 5 failed attempts" the 4th not triggering yet; "expires
//! after 30 minutes" the 31st minute refused and the 29th working; "a 6-digit code" 5 digits.

use storyforge_domain::job::{Expect, Technique};

use super::clauses::{self, lower_first, reads_refusal};
use super::limits::{Bound, Limit};
use super::{
    Deriving, Draft, ENDS, FAR_SIDE, NEAR_SIDE, REQUIREMENT_WORDS, attempt_of, clauses_shows,
};

/// The far side and the near side of one limit; either may be missing.
type Sides = (Option<Draft>, Option<Draft>);

impl Deriving<'_> {
    /// The conditions around one limit of `clause`.
    pub(super) fn limit(&mut self, id: Option<&str>, clause: &str, limit: &Limit) {
        let rule = LimitRule::new(clause, limit, self.goal().to_string(), self.attempt());
        let (far, near) = match limit.bound {
            Bound::AtMost => rule.at_most(),
            Bound::AtLeast => rule.at_least(),
            Bound::Above | Bound::Below => rule.above_or_below(),
            Bound::Count => rule.count(),
            Bound::Span => rule.span(),
            Bound::Exactly => rule.exactly(),
            // "within 300 ms": the clause met measures it.
            Bound::Within => (None, None),
        };
        // "The minimum cash-out is $20": the clause met is the value at the limit already.
        let near = near.filter(|_| clause.split_whitespace().count() > 6);
        for draft in [far, near].into_iter().flatten() {
            self.push(id, draft);
        }
    }
}

/// One limit of a clause, with what every side of it is written from.
struct LimitRule<'c> {
    clause: &'c str,
    limit: Limit,
    /// The limit as the story states it ("20 addresses", "$500").
    stated: String,
    /// The clause refuses something ("is rejected", "cannot").
    refusal: bool,
    /// The clause requires something of the input ("must", "is required").
    requirement: bool,
    /// The clause says what is shown rather than what is refused ("shows at most 10").
    shows: bool,
    goal: String,
    /// The story's action in the third person ("submits the form").
    attempt: String,
}

impl<'c> LimitRule<'c> {
    fn new(clause: &'c str, limit: &Limit, goal: String, attempt: String) -> LimitRule<'c> {
        // "The refund amount must be greater than 0": a bare number is the subject's value.
        let named = match clauses::subject_of(clause) {
            Some(subject) if limit.unit.is_empty() && limit.currency.is_empty() => {
                Some(lower_first(&subject)).filter(|s| s.split_whitespace().count() <= 4)
            }
            _ => None,
        };
        let limit = Limit {
            of: named,
            ..limit.clone()
        };
        let refusal = reads_refusal(clause);
        let requirement = !refusal
            && REQUIREMENT_WORDS
                .iter()
                .any(|w| clause.to_lowercase().split_whitespace().any(|x| x == *w));
        LimitRule {
            clause,
            stated: limit.stated(),
            limit,
            refusal,
            requirement,
            shows: clauses_shows(clause),
            goal,
            attempt,
        }
    }

    /// The story's action with `value`.
    fn with(&self, value: &str) -> String {
        format!("{} with {value}", self.attempt)
    }

    /// The draft of the value exactly at the limit.
    fn at_the_limit(&self, text: String, expect: Expect, outcome: String, tier: u8) -> Draft {
        Draft {
            technique: Technique::Boundary,
            text,
            expect,
            outcome,
            action: self.with(&self.limit.exactly()),
            tier,
            value: Some(self.limit.number.clone()),
        }
    }

    /// "up to 20": 21 refused (or no more than 20 shown), 20 accepted.
    fn at_most(&self) -> Sides {
        let (limit, stated, clause) = (&self.limit, &self.stated, self.clause);
        let past = limit.with_value(&limit.step(true));
        let far = Draft {
            technique: Technique::Boundary,
            text: format!("{past}, just over the limit of {stated}"),
            expect: if self.shows {
                Expect::Other
            } else {
                Expect::Refused
            },
            outcome: if self.shows {
                format!("no more than {stated} (the limit of: {clause})")
            } else {
                format!(
                    "it is refused with a message naming the limit of {stated}, and nothing is changed"
                )
            },
            action: self.with(&past),
            tier: FAR_SIDE,
            value: Some(limit.step(true)),
        };
        let near = self.at_the_limit(
            format!("{}, at the limit", limit.exactly()),
            Expect::Accepted,
            format!("it is accepted: {stated} is within the limit"),
            NEAR_SIDE,
        );
        (Some(far), Some(near))
    }

    /// "at least 3": 2 refused (or not happening yet), 3 accepted.
    fn at_least(&self) -> Sides {
        let (limit, stated, clause) = (&self.limit, &self.stated, self.clause);
        let short = limit.with_value(&limit.step(false));
        let expect = if self.requirement || self.refusal || !self.shows {
            Expect::Refused
        } else {
            Expect::Other
        };
        let far = Draft {
            technique: Technique::Boundary,
            text: format!("{short}, just under the minimum of {stated}"),
            expect,
            outcome: if expect == Expect::Refused {
                format!("it is refused with a message naming the minimum of {stated}")
            } else {
                format!("it does not happen yet (the rule: {clause})")
            },
            action: self.with(&short),
            tier: FAR_SIDE,
            value: Some(limit.step(false)),
        };
        let near = self.at_the_limit(
            format!("{}, the minimum", limit.exactly()),
            Expect::Accepted,
            format!("it is accepted: {stated} meets the minimum"),
            NEAR_SIDE,
        );
        (Some(far), Some(near))
    }

    /// "above $500": $500.01 takes the rule, $500 does not; "must be greater than 0": past the
    /// limit is what is required, at it is refused.
    fn above_or_below(&self) -> Sides {
        let (limit, stated, clause) = (&self.limit, &self.stated, self.clause);
        let above = limit.bound == Bound::Above;
        let past = limit.with_value(&limit.step(above));
        let (side, not_side) = if above {
            ("just above", "not above it")
        } else {
            ("just below", "not below it")
        };
        let (far_expect, near_expect) = if self.requirement {
            (Expect::Accepted, Expect::Refused)
        } else if self.refusal {
            (Expect::Refused, Expect::Accepted)
        } else {
            (Expect::Other, Expect::Accepted)
        };
        let technique = if limit.is_time {
            Technique::Time
        } else {
            Technique::Boundary
        };
        let consequence = &limit.consequence;
        let far = Draft {
            technique,
            text: format!("{past}, {side} {stated}"),
            expect: far_expect,
            outcome: match (far_expect, consequence.is_empty()) {
                (Expect::Accepted, _) => format!("it is accepted (the rule: {clause})"),
                (Expect::Refused, false) => {
                    format!("it is refused: {consequence} (the rule: {clause})")
                }
                (_, false) => format!("the rule applies: {consequence} (the rule: {clause})"),
                _ => format!("the rule applies (the rule: {clause})"),
            },
            action: self.with(&past),
            tier: FAR_SIDE,
            value: Some(limit.step(above)),
        };
        let near_outcome = match near_expect {
            Expect::Refused => format!(
                "it is refused with a message saying it must be {} {stated}",
                if above { "more than" } else { "less than" }
            ),
            _ => format!(
                "it is handled normally: the rule does not apply yet at exactly {stated} (the rule: {})",
                lower_first(clause)
            ),
        };
        let near = Draft {
            technique,
            ..self.at_the_limit(
                format!("{}, {not_side}", limit.exactly()),
                near_expect,
                near_outcome,
                if self.requirement {
                    FAR_SIDE
                } else {
                    NEAR_SIDE
                },
            )
        };
        (Some(far), Some(near))
    }

    /// "After 5 failed attempts the account is locked": the clause met is the 5th; the other
    /// side is one short of it.
    fn count(&self) -> Sides {
        let (limit, stated) = (&self.limit, &self.stated);
        let short = limit.with_value(&limit.step(false));
        let near = Draft {
            technique: Technique::Boundary,
            text: format!("{short}, one short of {stated}"),
            expect: Expect::Accepted,
            outcome: format!(
                "it is handled normally: the rule does not apply yet (the rule: {})",
                lower_first(self.clause)
            ),
            action: format!("reaches only {short}"),
            tier: FAR_SIDE,
            value: Some(limit.step(false)),
        };
        (None, Some(near))
    }

    /// "The reset link expires after 30 minutes": the link after 31 minutes, and after 29.
    fn span(&self) -> Sides {
        let (limit, stated, clause) = (&self.limit, &self.stated, self.clause);
        let subject = clauses::subject_of(clause)
            .filter(|s| s.split_whitespace().count() <= 6)
            .map(|s| lower_first(&s));
        let before = limit.with_value(&limit.step(false));
        let after = limit.with_value(&limit.step(true));
        // "locked for 15 minutes": the state holds until the span ends; "expires after 7 days",
        // "valid for 30 seconds", "after 30 minutes idle the session ends": the thing works
        // until it ends, then it is refused.
        let ends = ENDS.is_match(clause);
        let holds = reads_refusal(clause) && !ends;
        let (during, past) = if holds {
            (Expect::Refused, Expect::Accepted)
        } else if ends {
            (Expect::Accepted, Expect::Refused)
        } else {
            (Expect::Other, Expect::Other)
        };
        let over = match past {
            Expect::Refused => format!("it is refused as expired: the {stated} are over"),
            Expect::Accepted => format!("it works again: the {stated} are over"),
            Expect::Other => format!("the {stated} are over (the rule: {clause})"),
        };
        let within = match during {
            Expect::Refused => format!("it is still refused: the {stated} are not over yet"),
            Expect::Accepted => format!("it still works: the {stated} are not over yet"),
            Expect::Other => format!("the {stated} are not over yet (the rule: {clause})"),
        };
        let of = |when: &str| match &subject {
            Some(subject) => format!("{subject} {when}"),
            None => when.to_string(),
        };
        let far = Draft {
            technique: Technique::Time,
            text: of(&format!("after {after}, just past the {stated}")),
            expect: past,
            outcome: over,
            action: format!("waits {after}, then {}", attempt_of(&self.goal)),
            tier: FAR_SIDE,
            value: Some(limit.step(true)),
        };
        let near = Draft {
            technique: Technique::Time,
            text: of(&format!("after {before}, still within the {stated}")),
            expect: during,
            outcome: within,
            action: format!("waits {before}, then {}", attempt_of(&self.goal)),
            tier: NEAR_SIDE,
            value: Some(limit.step(false)),
        };
        (Some(far), Some(near))
    }

    /// "a 6-digit code": a 5-digit one refused.
    fn exactly(&self) -> Sides {
        let (limit, stated) = (&self.limit, &self.stated);
        let short = limit.with_value(&limit.step(false));
        let far = Draft {
            technique: Technique::Boundary,
            text: format!("a {short} value instead of {stated}"),
            expect: Expect::Refused,
            outcome: format!("it is refused: it must be {stated}"),
            action: self.with(&format!("a {short} value")),
            tier: FAR_SIDE,
            value: Some(limit.step(false)),
        };
        (Some(far), None)
    }
}
