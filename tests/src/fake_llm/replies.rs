//! Replies tests script the fake LLM with: realistic generation, risks and judge replies, the
//! responder that answers each kind of request, and a responder that fails first.

use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

use super::{RecordedRequest, Reply};

/// A realistic, valid generation reply: `{"test_cases": [...]}` with `n` cases `TC_001`...
///
/// Priorities mix `critical`, `high`, `medium` and `low`; every `given`/`when`/`then` is a full
/// sentence. With `n >= 2` there is at least one positive case ("... succeeds") and one negative
/// case ("... is rejected").
pub fn valid_cases_json(n: usize) -> String {
    const CASES: [(&str, &str, &str, &str, &str); 6] = [
        (
            "Checkout succeeds with a valid card",
            "high",
            "A signed-in shopper has two items in the cart",
            "The shopper pays with a valid, unexpired credit card",
            "The order is confirmed AND the cart is emptied",
        ),
        (
            "Payment with an expired card is rejected",
            "critical",
            "A signed-in shopper has one item in the cart",
            "The shopper pays with a card that expired last month",
            "The payment is rejected AND no order is created",
        ),
        (
            "Order total includes shipping and tax",
            "medium",
            "A shopper in Germany has items worth 40 EUR in the cart",
            "The shopper opens the order summary page",
            "The total shows 40 EUR plus 4.99 EUR shipping and 19% VAT",
        ),
        (
            "Checkout of an empty cart is rejected",
            "medium",
            "A signed-in shopper has an empty cart",
            "The shopper navigates directly to the checkout URL",
            "The checkout is rejected AND the shopper is sent back to the cart",
        ),
        (
            "Confirmation e-mail is sent after ordering",
            "low",
            "A shopper has just placed an order successfully",
            "The order confirmation job runs",
            "An e-mail with the order number reaches the shopper's inbox",
        ),
        (
            "Discount code applies only once per order",
            "high",
            "A shopper has a valid 10% discount code",
            "The shopper enters the same code twice on one order",
            "The second attempt is rejected AND the discount stays at 10%",
        ),
    ];
    let cases: Vec<Value> = (0..n)
        .map(|index| {
            let (title, priority, given, when, then) = CASES[index % CASES.len()];
            let round = index / CASES.len();
            let title = if round == 0 {
                title.to_owned()
            } else {
                format!("{title} (variant {})", round + 1)
            };
            json!({
                "id": format!("TC_{:03}", index + 1),
                "title": title,
                "priority": priority,
                "given": given,
                "when": when,
                "then": then,
            })
        })
        .collect();
    json!({ "test_cases": cases }).to_string()
}

/// A judge reply on the 0–10 scale:
/// `{"relevance_score":8,"coverage_score":7,"clarity_score":9,"reasoning":"..."}`.
pub fn judge_json(relevance: u8, coverage: u8, clarity: u8) -> String {
    json!({
        "relevance_score": relevance,
        "coverage_score": coverage,
        "clarity_score": clarity,
        "reasoning": format!(
            "Relevance {relevance}/10: the cases follow the story. Coverage {coverage}/10: the \
             happy path and the main rejections are present. Clarity {clarity}/10: each step is \
             a single observable action or outcome."
        ),
    })
    .to_string()
}

/// A model that does what each request asks, read from its schema and prompt the way a real
/// model reads them: the domain risks asked for (`risks`), one test case per test condition the
/// prompt lists (pinned by the schema's `prefixItems`), a judge's verdict, or the evaluation
/// judge's pick among the cases shown. Its cases name their condition's value in the action
/// and state the expected outcome, so they pass the pipeline's checks; any other request gets
/// [`valid_cases_json`]`(3)`.
pub fn answer(request: &RecordedRequest) -> Reply {
    let Some(schema) = request.json_schema() else {
        return Reply::text(valid_cases_json(3));
    };
    let properties = &schema["properties"];
    if properties.get("risks").is_some() {
        let count = properties["risks"]["minItems"].as_u64().unwrap_or(2) as usize;
        return Reply::text(risks_json(count));
    }
    if properties.get("relevance_score").is_some() {
        return Reply::text(judge_json(9, 8, 9));
    }
    if let Some(choices) = properties["case"]["enum"].as_array() {
        return Reply::text(json!({ "case": choices[0] }).to_string());
    }
    match properties["test_cases"]["prefixItems"].as_array() {
        Some(items) => Reply::text(condition_cases_json(items, &request.last_user_message())),
        None => Reply::text(valid_cases_json(3)),
    }
}

/// `count` domain risks, none tied to a criterion.
pub fn risks_json(count: usize) -> String {
    const RISKS: [(&str, &str, &str); 3] = [
        (
            "the same request is sent twice by a double click",
            "other",
            "only one result is created and the second request is answered without a duplicate",
        ),
        (
            "the record was deleted by someone else a moment before",
            "refused",
            "a not-found message is shown and nothing is changed",
        ),
        (
            "the session has expired when the request is sent",
            "refused",
            "the user is asked to sign in again and nothing is lost",
        ),
    ];
    let risks: Vec<Value> = (0..count)
        .map(|i| {
            let (situation, expect, outcome) = RISKS[i % RISKS.len()];
            json!({"situation": situation, "expect": expect, "outcome": outcome, "criterion": "none"})
        })
        .collect();
    json!({ "risks": risks }).to_string()
}

/// One case per pinned schema item, for the condition the prompt lists under that item's id
/// (`C3: <text> -> expected outcome: <expected>`).
pub fn condition_cases_json(items: &[Value], prompt: &str) -> String {
    let cases: Vec<Value> = items
        .iter()
        .map(|item| {
            let id = item["properties"]["condition"]["const"]
                .as_str()
                .unwrap_or_default();
            let criterion = item["properties"]["covers"]["prefixItems"][0]["const"].as_str();
            let (text, expected) = prompt
                .lines()
                .find_map(|line| {
                    let rest = line.strip_prefix(id)?;
                    let rest = rest.trim_start_matches(|c: char| c != ':').strip_prefix(':')?;
                    let (text, expected) = rest.split_once(" -> expected outcome: ")?;
                    Some((text.trim().to_owned(), expected.trim().to_owned()))
                })
                .unwrap_or_else(|| (format!("condition {id}"), "accepted".to_owned()));
            let then = match expected.as_str() {
                "refused" => "The request is refused and a message explains why".to_owned(),
                "accepted" => "The request succeeds and the result is shown to the user".to_owned(),
                other => format!("The system behaves {other}: {text}"),
            };
            let title: String = format!("Tests {text}").chars().take(190).collect();
            let mut case = json!({
                "condition": id,
                "title": title,
                "priority": "high",
                "given": "A signed-in user with the data the condition needs",
                "when": format!("The user tries it with {text}").chars().take(490).collect::<String>(),
                "then": then.chars().take(490).collect::<String>(),
            });
            if let Some(criterion) = criterion {
                case["covers"] = json!([criterion]);
            }
            case
        })
        .collect();
    json!({ "test_cases": cases }).to_string()
}

/// A responder whose first `n` chat requests get `failure` and every later one [`answer`].
pub fn failing_first(n: usize, failure: Reply) -> impl Fn(&RecordedRequest) -> Reply {
    let seen = AtomicUsize::new(0);
    move |request| match seen.fetch_add(1, Ordering::SeqCst) < n {
        true => failure.clone(),
        false => answer(request),
    }
}
