//! How clauses, subjects and refusals are read, on real criteria.

use super::*;

#[test]
fn clauses_split_where_a_verb_follows() {
    assert_eq!(
        split("A declined card shows the decline reason from the bank and the receipt is mailed"),
        [
            "A declined card shows the decline reason from the bank",
            "the receipt is mailed"
        ]
    );
    assert_eq!(
        split(
            "The first row must hold the column headers; 'email' and 'last_name' are required columns"
        ),
        [
            "The first row must hold the column headers",
            "'email' and 'last_name' are required columns"
        ]
    );
    assert_eq!(
        split(
            "A deactivated user cannot log in and sees the message 'Your account has been deactivated. Contact your administrator.'"
        ),
        [
            "A deactivated user cannot log in and sees the message 'Your account has been deactivated. Contact your administrator.'"
        ],
        "the message is how the refusal shows: one clause"
    );
    assert_eq!(
        split("After enabling, 10 recovery codes are shown once and can be downloaded"),
        [
            "After enabling, 10 recovery codes are shown once",
            "10 recovery codes can be downloaded"
        ]
    );
    assert_eq!(
        split(
            "Captions can be turned on and off in the player, and the choice is remembered for the next video"
        ),
        [
            "Captions can be turned on and off in the player",
            "the choice is remembered for the next video"
        ]
    );
}

#[test]
fn refusals_are_read_and_negated_errors_are_not_refusals() {
    assert!(reads_refusal("A date of birth in the future is rejected"));
    assert!(reads_refusal("Deactivated users cannot sign in"));
    assert!(reads_refusal("Requests with an invalid API key return 401"));
    assert!(!reads_refusal("then no error summary is shown"));
    assert!(!reads_refusal(
        "The login is not refused and the time is shown"
    ));
    assert!(!reads_refusal("The account is never locked"));
    assert!(reads_refusal(
        "The order can not be cancelled after shipping"
    ));
    assert!(!reads_refusal("A code is valid for 30 seconds"));
}

#[test]
fn branches_name_the_other_side() {
    let b =
        branch("GET /readyz returns 200 only when the database connection is up, otherwise 503")
            .unwrap();
    assert_eq!(b.situation, "the database connection is not up");
    assert_eq!(b.outcome.as_deref(), Some("503"));
    let b = branch("If the bank requires 3-D Secure, the shopper is sent to the verification step")
        .unwrap();
    assert_eq!(b.situation, "the bank does not require 3-D Secure");
    let b = branch("Orders ship the same day unless they are placed after 14:00").unwrap();
    assert_eq!(b.situation, "they are placed after 14:00");
    assert!(branch("The customer receives an email").is_none());
}

#[test]
fn alternatives_of_a_refusal_are_spelled_out() {
    assert_eq!(
        alternatives("An invalid or expired cursor returns 400 with the code 'invalid_cursor'"),
        [
            "An invalid cursor returns 400 with the code 'invalid_cursor'",
            "An expired cursor returns 400 with the code 'invalid_cursor'"
        ]
    );
    assert_eq!(
        alternatives("An assertion older than 5 minutes or with an invalid signature is rejected"),
        [
            "An assertion older than 5 minutes is rejected",
            "An assertion with an invalid signature is rejected"
        ]
    );
    assert!(alternatives("Customers pay by card or PayPal").is_empty());
}

#[test]
fn sentences_end_at_full_stops_not_in_abbreviations_brackets_or_quotes() {
    assert_eq!(
        split(
            "A code with a minimum order value (e.g. EUR 50) is rejected below that value. Codes are case-insensitive"
        ),
        [
            "A code with a minimum order value (e.g. EUR 50) is rejected below that value",
            "Codes are case-insensitive"
        ]
    );
    assert_eq!(
        split("An invalid code shows \"This code is not valid\" and the total does not change"),
        ["An invalid code shows \"This code is not valid\" and the total does not change"]
    );
}

#[test]
fn broken_rules_read_as_input() {
    assert_eq!(
        broken_rule("The limit is per key, one noisy key must not affect other keys").as_deref(),
        Some("one noisy key affects other keys")
    );
    assert_eq!(
        broken_rule("The first row must hold the column headers").as_deref(),
        Some("the first row does not hold the column headers")
    );
    assert_eq!(
        broken_rule(
            "Biometric login can only be switched on after a successful PIN login on that device"
        )
        .as_deref(),
        Some("Biometric login switched on without a successful PIN login on that device first")
    );
    assert_eq!(
        broken_rule("Given a valid card, when the shopper places the order").as_deref(),
        Some("an invalid card")
    );
}
