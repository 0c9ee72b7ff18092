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

#[tokio::test]
async fn a_403_fails_at_once_without_refreshing_the_token() {
    let oauth = MockOAuth::start().await;
    let codex = MockCodex::start(&["unused"]).await;
    codex.fail_with(
        403,
        json!({"detail": "This workspace does not have access to this model."}),
    );
    let hub = codex_hub(&codex, &oauth).await;
    let mut client = hub.client().await;
    let mut req = request("hello");
    req.provider = Provider::OpenaiCodex as i32;
    let events = run(&mut client, req).await;

    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert!(
        f.error.starts_with("openai-codex: HTTP 403: "),
        "{}",
        f.error
    );
    assert!(
        f.error
            .contains("the account or token lacks permission for this request; not retried"),
        "{}",
        f.error
    );
    assert_eq!(f.attempts, 1);
    assert_eq!(retries(&events), 0, "no retry, no refresh-and-retry");
    assert_eq!(oauth.refresh_requests(), 0, "a 403 is not a stale token");
    assert_eq!(codex.seen().len(), 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn insufficient_quota_fails_at_once_and_says_so() {
    let oauth = MockOAuth::start().await;
    let codex = MockCodex::start(&["unused"]).await;
    // What the backend sends when the account's credits are used up: a 429 that no wait fixes.
    codex.fail_with(
        429,
        json!({"error": {
            "message": "You exceeded your current quota, please check your plan and billing details.",
            "type": "insufficient_quota", "param": null, "code": "insufficient_quota"
        }}),
    );
    let hub = codex_hub(&codex, &oauth).await;
    let mut client = hub.client().await;
    let mut req = request("hello");
    req.provider = Provider::OpenaiCodex as i32;
    let events = run(&mut client, req).await;

    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert!(
        f.error.starts_with(
            "openai-codex: HTTP 429: insufficient_quota: You exceeded your current quota"
        ),
        "{}",
        f.error
    );
    assert!(
        f.error
            .contains("the account's quota or credits are exhausted; not retried"),
        "{}",
        f.error
    );
    assert_eq!(f.attempts, 1);
    assert_eq!(retries(&events), 0, "not retried like a rate limit");
    assert_eq!(codex.seen().len(), 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_spent_chatgpt_usage_limit_fails_at_once_and_says_when_it_resets() {
    let oauth = MockOAuth::start().await;
    let codex = MockCodex::start(&["unused"]).await;
    // What the backend sends when the plan's usage window is spent: a 429 that only the
    // window's reset fixes, hours later.
    let resets_at = now_ms() / 1000 + 2 * 3600;
    codex.fail_with(
        429,
        json!({"error": {
            "type": "usage_limit_reached", "message": "The usage limit has been reached",
            "plan_type": "plus", "resets_at": resets_at
        }}),
    );
    let hub = codex_hub(&codex, &oauth).await;
    let mut client = hub.client().await;
    let mut req = request("hello");
    req.provider = Provider::OpenaiCodex as i32;
    let events = run(&mut client, req).await;

    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    let at = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(resets_at as u64));
    assert!(
        f.error.starts_with(&format!(
            "openai-codex: HTTP 429: usage_limit_reached: The usage limit has been reached (plan plus; resets at {at}, in "
        )),
        "{}",
        f.error
    );
    assert!(
        f.error.ends_with(
            "(the ChatGPT plan's usage limit was reached; not retried: run the command again once the limit resets, or upgrade the plan)"
        ),
        "{}",
        f.error
    );
    assert_eq!(f.attempts, 1);
    assert_eq!(retries(&events), 0, "not retried like a rate limit");
    assert_eq!(codex.seen().len(), 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn a_chatgpt_plan_without_codex_fails_at_once_and_says_to_upgrade() {
    let oauth = MockOAuth::start().await;
    let codex = MockCodex::start(&["unused"]).await;
    // What the backend sends when the signed-in ChatGPT plan does not include Codex: a 429
    // that no wait fixes (the Codex CLI ends the turn on it).
    codex.fail_with(
        429,
        json!({"error": {
            "type": "usage_not_included",
            "message": "To use Codex with your ChatGPT plan, upgrade to Plus."
        }}),
    );
    let hub = codex_hub(&codex, &oauth).await;
    let mut client = hub.client().await;
    let mut req = request("hello");
    req.provider = Provider::OpenaiCodex as i32;
    let events = run(&mut client, req).await;

    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert_eq!(
        f.error,
        "openai-codex: HTTP 429: usage_not_included: To use Codex with your ChatGPT plan, upgrade to Plus. \
         (the ChatGPT plan does not include Codex; not retried: upgrade the plan, or sign in with an account \
         whose plan includes Codex: `helix-hub login openai-codex`)"
    );
    assert_eq!(f.attempts, 1);
    assert_eq!(retries(&events), 0, "not retried like a rate limit");
    assert_eq!(codex.seen().len(), 1);
    hub.shutdown().await;
}
