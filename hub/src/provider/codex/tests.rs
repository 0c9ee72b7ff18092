//! Unit tests of the Codex provider's request and event mapping.

use super::*;

#[test]
fn events_are_interpreted() {
    assert!(matches!(
        interpret(r#"{"type":"response.output_text.delta","delta":"hi"}"#),
        Step::Text(t) if t == "hi"
    ));
    assert!(matches!(
        interpret(r#"{"type":"response.completed","response":{}}"#),
        Step::Done
    ));
    match interpret(
        r#"{"type":"response.failed","response":{"error":{"code":"rate_limit_exceeded","message":"slow down"}}}"#,
    ) {
        Step::Fail(e) => {
            assert_eq!(e.kind, ErrorKind::RateLimited);
            assert_eq!(e.message, "openai-codex: rate_limit_exceeded: slow down");
        }
        _ => panic!("expected a failure"),
    }
    assert!(matches!(
        interpret(r#"{"type":"response.created"}"#),
        Step::Nothing
    ));
}

#[test]
fn a_plan_without_codex_is_final() {
    let body = r#"{"error":{"type":"usage_not_included","message":"upgrade to Plus","code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        describe_http_error(body),
        (
            Some(ErrorKind::NotInPlan),
            "usage_not_included: upgrade to Plus".to_owned()
        )
    );
    match interpret(
        r#"{"type":"response.failed","response":{"error":{"code":"usage_not_included","message":"not in plan"}}}"#,
    ) {
        Step::Fail(e) => {
            assert_eq!(e.kind, ErrorKind::NotInPlan);
            assert!(!e.is_retryable());
            assert!(
                e.to_string().ends_with("`helix-hub login openai-codex`)"),
                "{e}"
            );
        }
        _ => panic!("expected a failure"),
    }
}

#[test]
fn insufficient_quota_is_not_a_rate_limit() {
    let body = r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":null}}"#;
    assert_eq!(
        describe_http_error(body),
        (
            Some(ErrorKind::QuotaExhausted),
            "insufficient_quota: You exceeded your current quota.".to_owned()
        )
    );
    // Other bodies leave the classification to the status.
    let (kind, detail) =
        describe_http_error(r#"{"error":{"code":"rate_limit_exceeded","message":"slow"}}"#);
    assert_eq!((kind, detail.as_str()), (None, "rate_limit_exceeded: slow"));
    assert_eq!(
        describe_http_error("<html>busy</html>"),
        (None, "<html>busy</html>".to_owned())
    );
    match interpret(
        r#"{"type":"response.failed","response":{"error":{"code":"insufficient_quota","message":"no credits"}}}"#,
    ) {
        Step::Fail(e) => {
            assert_eq!(e.kind, ErrorKind::QuotaExhausted);
            assert!(!e.is_retryable());
            assert!(
                e.to_string().contains("quota or credits are exhausted"),
                "{e}"
            );
        }
        _ => panic!("expected a failure"),
    }
}

#[test]
fn a_spent_usage_limit_is_final_and_says_when_it_resets() {
    let now = 1_800_000_000_000; // ms
    let body = r#"{"error":{"type":"usage_limit_reached","message":"The usage limit has been reached","plan_type":"plus","resets_at":1800003900}}"#;
    assert_eq!(
        describe_http_error_at(body, now),
        (
            Some(ErrorKind::UsageLimitReached),
            "usage_limit_reached: The usage limit has been reached (plan plus; resets at 2027-01-15T09:05:00Z, in 1h 5m)".to_owned()
        )
    );
    // The older relative form, and no message or plan.
    let body = r#"{"error":{"type":"usage_limit_reached","code":null,"resets_in_seconds":90}}"#;
    assert_eq!(
        describe_http_error_at(body, now),
        (
            Some(ErrorKind::UsageLimitReached),
            "usage_limit_reached (resets at 2027-01-15T08:01:30Z, in 1m 30s)".to_owned()
        )
    );
    // Named by `type` even when `code` says something else.
    let body = r#"{"error":{"type":"usage_limit_reached","code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        describe_http_error_at(body, now),
        (
            Some(ErrorKind::UsageLimitReached),
            "usage_limit_reached".to_owned()
        )
    );
    match interpret(
        r#"{"type":"response.failed","response":{"error":{"code":"usage_limit_reached","message":"limit reached","resets_in_seconds":7200}}}"#,
    ) {
        Step::Fail(e) => {
            assert_eq!(e.kind, ErrorKind::UsageLimitReached);
            assert!(!e.is_retryable());
            assert!(
                e.message
                    .starts_with("openai-codex: usage_limit_reached: limit reached (resets at "),
                "{e}"
            );
            assert!(
                e.message.contains(", in 1h 59m") || e.message.contains(", in 2h"),
                "{e}"
            );
            assert!(
                e.to_string()
                    .ends_with("(the ChatGPT plan's usage limit was reached; not retried: run the command again once the limit resets, or upgrade the plan)"),
                "{e}"
            );
        }
        _ => panic!("expected a failure"),
    }
}

#[test]
fn earlier_turns_are_user_and_assistant_messages_before_the_prompt() {
    let history = [Turn {
        prompt: "my name is Ada".into(),
        answer: "Hello Ada".into(),
    }];
    assert_eq!(
        input(&history, "what is my name?"),
        json!([
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "my name is Ada"}]},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Hello Ada"}]},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "what is my name?"}]},
        ])
    );
}
