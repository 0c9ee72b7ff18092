//! Provider failures that retrying or refreshing cannot fix end the command at once, with a
//! message that says why: a 403 (the account may not do this), an exhausted quota, and a spent
//! ChatGPT plan usage limit, and a ChatGPT plan that does not include Codex.

use std::time::{Duration, UNIX_EPOCH};

use helix_mesh::{
    pb::{CommandStatus, Provider, command_event::Kind},
    proto_ext::now_ms,
};
use serde_json::json;

use crate::support::{
    TestHub, config_for, finished,
    mock_anthropic::{MockAnthropic, Reply},
    mock_codex::MockCodex,
    mock_oauth::{MockOAuth, store_codex},
    request, run,
};

/// A hub whose openai-codex provider is `codex`, with a valid (unexpiring) ChatGPT token whose
/// refresh `oauth` would accept.
async fn codex_hub(codex: &MockCodex, oauth: &MockOAuth) -> TestHub {
    oauth.accept_refresh(1);
    let anthropic = MockAnthropic::start(Reply::text(&["unused"])).await;
    let mut config = config_for(&anthropic);
    config.providers.openai_codex.base_url = codex.base_url();
    config.providers.openai_codex.issuer = oauth.issuer();
    let hub = TestHub::start_without_credentials(config).await;
    store_codex(hub.path(), 1, now_ms() + 3_600_000);
    hub
}

fn retries(events: &[helix_mesh::pb::CommandEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.kind, Some(Kind::Retrying(_))))
        .count()
}

/// Runs one openai-codex command against a backend that answers `status` with `body`, and
/// checks that it ended at once: failed, one attempt, no retry, one request to the backend.
/// Returns the command's error and how many token refreshes were asked for.
async fn refused_at_once(status: u16, body: serde_json::Value) -> (String, usize) {
    let oauth = MockOAuth::start().await;
    let codex = MockCodex::start(&["unused"]).await;
    codex.fail_with(status, body);
    let hub = codex_hub(&codex, &oauth).await;
    let mut client = hub.client().await;
    let mut req = request("hello");
    req.provider = Provider::OpenaiCodex as i32;
    let events = run(&mut client, req).await;

    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32, "{}", f.error);
    assert_eq!(f.attempts, 1);
    assert_eq!(
        retries(&events),
        0,
        "not retried (nor refreshed and retried)"
    );
    assert_eq!(codex.seen().len(), 1);
    hub.shutdown().await;
    (f.error.clone(), oauth.refresh_requests())
}

#[tokio::test]
async fn a_403_fails_at_once_without_refreshing_the_token() {
    let (error, refreshes) = refused_at_once(
        403,
        json!({"detail": "This workspace does not have access to this model."}),
    )
    .await;
    assert!(error.starts_with("openai-codex: HTTP 403: "), "{error}");
    assert!(
        error.contains("the account or token lacks permission for this request; not retried"),
        "{error}"
    );
    assert_eq!(refreshes, 0, "a 403 is not a stale token");
}

#[tokio::test]
async fn insufficient_quota_fails_at_once_and_says_so() {
    // What the backend sends when the account's credits are used up: a 429 that no wait fixes.
    let (error, _) = refused_at_once(
        429,
        json!({"error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "param": null, "code": "insufficient_quota"
        }}),
    )
    .await;
    assert!(
        error.starts_with(
            "openai-codex: HTTP 429: insufficient_quota: You exceeded your current quota"
        ),
        "{error}"
    );
    assert!(
        error.contains("the account's quota or credits are exhausted; not retried"),
        "{error}"
    );
}

#[tokio::test]
async fn a_spent_chatgpt_usage_limit_fails_at_once_and_says_when_it_resets() {
    // What the backend sends when the plan's usage window is spent: a 429 that only the
    // window's reset fixes, hours later.
    let resets_at = now_ms() / 1000 + 2 * 3600;
    let (error, _) = refused_at_once(
        429,
        json!({"error": {
            "type": "usage_limit_reached", "message": "The usage limit has been reached",
            "plan_type": "plus", "resets_at": resets_at
        }}),
    )
    .await;
    let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(resets_at as u64));
    assert!(
        error.starts_with(&format!(
            "openai-codex: HTTP 429: usage_limit_reached: The usage limit has been reached (plan plus; resets at {at}, in "
        )),
        "{error}"
    );
    assert!(
        error.ends_with(
            "(the ChatGPT plan's usage limit was reached; not retried: run the command again once the limit resets, or upgrade the plan)"
        ),
        "{error}"
    );
}

#[tokio::test]
async fn a_chatgpt_plan_without_codex_fails_at_once_and_says_to_upgrade() {
    // What the backend sends when the signed-in ChatGPT plan does not include Codex: a 429
    // that no wait fixes (the Codex CLI ends the turn on it).
    let (error, _) = refused_at_once(
        429,
        json!({"error": {
            "type": "usage_not_included",
            "message": "To use Codex with your ChatGPT plan, upgrade to Plus."
        }}),
    )
    .await;
    assert_eq!(
        error,
        "openai-codex: HTTP 429: usage_not_included: To use Codex with your ChatGPT plan, upgrade to Plus. \
         (the ChatGPT plan does not include Codex; not retried: upgrade the plan, or sign in with an account \
         whose plan includes Codex: `helix-hub login openai-codex`)"
    );
}
