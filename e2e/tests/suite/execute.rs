//! Executing commands: streaming, concurrency, expiry, retries, idempotency, attach.

use std::time::Duration;

use helix_hub::provider::{
    ErrorKind, OutputStream, ProviderError, ProviderExec, ProviderRequest, Providers,
};
use helix_mesh::pb::{self, CommandStatus, command_event::Kind};

use crate::support::{
    TEST_API_KEY, TestHub, assert_contiguous, attach_all, collect, config_for, finished, is_output,
    kinds,
    mock_anthropic::{MockAnthropic, Reply},
    output, read_until, request, request_expiring, run, status_of,
};

#[tokio::test]
async fn output_streams_complete_in_order_and_live() {
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    let chunks: Vec<String> = (0..200).map(|i| format!("tok{i} ")).collect();
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    // First a hanging reply: the first chunk must reach the spoke while the provider is still
    // streaming (nothing is held back until the end).
    mock.script([Reply::hang_after(&["Hel", "lo"]), Reply::text(&refs)]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;

    let mut stream = client
        .execute(request("say hello"))
        .await
        .unwrap()
        .into_inner();
    let head = read_until(&mut stream, |e| output(std::slice::from_ref(e)) == "lo").await;
    assert_eq!(kinds(&head), ["queued", "started", "output", "output"]);
    assert_eq!(output(&head), "Hello");
    mock.release();
    let tail = collect(stream).await;
    assert_eq!(kinds(&tail), ["finished"]);
    let f = finished(&tail);
    assert_eq!(f.status, CommandStatus::Completed as i32);
    assert_eq!(f.attempts, 1);
    assert!(f.executed_at.is_some());

    // 200 token-sized chunks arrive complete, in order, with contiguous seqs.
    let events = run(&mut client, request("count")).await;
    assert_contiguous(&events, 1);
    assert_eq!(output(&events), chunks.concat());
    assert_eq!(events.iter().filter(|e| is_output(e)).count(), 200);
    assert_eq!(finished(&events).status, CommandStatus::Completed as i32);

    // The provider got the key, the API version and the prompt as a streaming request.
    let seen = mock.seen();
    assert_eq!(seen[1].api_key.as_deref(), Some(TEST_API_KEY));
    assert_eq!(seen[1].version.as_deref(), Some("2023-06-01"));
    assert_eq!(seen[1].body["stream"], true);
    assert_eq!(seen[1].body["messages"][0]["content"], "count");
    hub.shutdown().await;
}

#[tokio::test]
async fn twenty_commands_never_exceed_five_in_flight() {
    let mock = MockAnthropic::start(Reply::slow(&["a", "b", "c"], Duration::from_millis(15))).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let client = hub.client().await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = client.clone();
        tasks.push(tokio::spawn(async move {
            run(&mut client, request(&format!("prompt {i}"))).await
        }));
    }
    let mut positions = Vec::new();
    for t in tasks {
        let events = t.await.unwrap();
        assert_eq!(output(&events), "abc");
        assert_eq!(finished(&events).status, CommandStatus::Completed as i32);
        if let Some(Kind::Queued(q)) = &events[0].kind {
            positions.push(q.position);
        }
    }
    assert_eq!(mock.requests(), 20);
    assert_eq!(
        mock.max_in_flight(),
        5,
        "the default limit is 5, and it was reached"
    );
    assert_eq!(positions.len(), 20);
    hub.shutdown().await;
}

#[tokio::test]
async fn expired_commands_never_reach_the_provider() {
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    let mut config = config_for(&mock);
    config.max_concurrent = 1;
    let hub = TestHub::start(config).await;
    let mut client = hub.client().await;

    // Already expired when it arrives.
    let events = run(&mut client, request_expiring("too late", -1000)).await;
    assert_eq!(kinds(&events), ["queued", "finished"]);
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Expired as i32);
    assert_eq!(f.attempts, 0);
    assert!(f.executed_at.is_none());
    assert_eq!(mock.requests(), 0);

    // Expires while waiting behind a long command.
    mock.script([Reply::hang_after(&["busy"])]);
    let mut blocker = client
        .execute(request("blocker"))
        .await
        .unwrap()
        .into_inner();
    read_until(&mut blocker, is_output).await;
    let waiting = client
        .execute(request_expiring("short-lived", 300))
        .await
        .unwrap()
        .into_inner();
    tokio::time::sleep(Duration::from_millis(400)).await;
    mock.release();
    let events = collect(waiting).await;
    assert_eq!(finished(&events).status, CommandStatus::Expired as i32);
    collect(blocker).await;
    assert_eq!(mock.requests(), 1, "only the blocker reached the provider");
    hub.shutdown().await;
}

#[tokio::test]
async fn overloaded_twice_then_success_retries_visibly_and_outputs_once() {
    let mock = MockAnthropic::start(Reply::text(&["fine ", "now"])).await;
    mock.script([Reply::status(529), Reply::status(529)]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let events = run(&mut client, request("retry me")).await;
    assert_eq!(
        kinds(&events),
        [
            "queued", "started", "retrying", "started", "retrying", "started", "output", "output",
            "finished"
        ]
    );
    let retries: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Retrying(r)) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        retries.iter().map(|r| r.attempt).collect::<Vec<_>>(),
        [2, 3]
    );
    assert!(retries[0].reason.contains("529"), "{}", retries[0].reason);
    assert!(retries.iter().all(|r| r.delay_ms <= 40));
    assert_eq!(output(&events), "fine now");
    let f = finished(&events);
    assert_eq!((f.status, f.attempts), (CommandStatus::Completed as i32, 3));
    assert_eq!(mock.requests(), 3);
    hub.shutdown().await;
}

/// Reads the journal through its own connection each time the hub calls it: what a hub that
/// died at that moment would find on restart. The first attempt fails (retryably). The
/// connection is opened before the first command, so a read takes microseconds: an attempt
/// queued to the journal but not yet committed is seen as missing.
#[derive(Debug, Default)]
struct JournalPeeker {
    db: std::sync::Mutex<Option<rusqlite::Connection>>,
    seen: std::sync::Mutex<Vec<String>>,
}

impl ProviderExec for JournalPeeker {
    fn execute(&self, request: ProviderRequest) -> OutputStream {
        let db = self.db.lock().unwrap();
        let db = db.as_ref().expect("journal opened before any command");
        let (status, attempts): (String, u32) = db
            .prepare_cached("SELECT status, attempts FROM commands WHERE command_id = ?1")
            .unwrap()
            .query_row([request.command_id.to_string()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .unwrap();
        let mut seen = self.seen.lock().unwrap();
        seen.push(format!("{status} {attempts}"));
        let first = seen.len() == 1;
        Box::pin(futures::stream::iter([if first {
            Err(ProviderError::new(
                ErrorKind::Connection,
                "the first attempt fails",
            ))
        } else {
            Ok("done".to_owned())
        }]))
    }
}

#[tokio::test]
async fn each_attempt_is_stored_as_started_before_the_provider_is_called() {
    // A hub that dies while the provider runs must find the command `executing` with this
    // attempt on restart (and fail it), never `pending` or at an older attempt (and run the
    // provider's side effects again).
    let mock = MockAnthropic::start(Reply::text(&["unused"])).await;
    let peeker = std::sync::Arc::new(JournalPeeker::default());
    let providers = Providers::default().with(pb::Provider::Anthropic, peeker.clone());
    let hub = TestHub::start_with_providers(config_for(&mock), providers).await;
    let db = rusqlite::Connection::open_with_flags(
        hub.path().join(helix_hub::journal::FILE_NAME),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    *peeker.db.lock().unwrap() = Some(db);
    let mut client = hub.client().await;
    let events = run(&mut client, request("twice")).await;
    assert_eq!(
        kinds(&events),
        [
            "queued", "started", "retrying", "started", "output", "finished"
        ]
    );
    assert_eq!(
        *peeker.seen.lock().unwrap(),
        ["executing 1", "executing 2"],
        "what a restart would have found while the provider ran"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn retries_stop_after_three_and_honour_retry_after() {
    let mock = MockAnthropic::start(Reply::status(503)).await;
    mock.script([Reply::Status {
        code: 429,
        retry_after: Some(0),
        error_type: "rate_limit_error".into(),
    }]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let events = run(&mut client, request("never works")).await;
    let retrying: Vec<_> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(Kind::Retrying(r)) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(retrying.len(), 3, "at most 3 retries");
    assert_eq!(retrying[0].delay_ms, 0, "retry-after: 0 is honoured");
    let f = finished(&events);
    assert_eq!((f.status, f.attempts), (CommandStatus::Failed as i32, 4));
    assert!(f.error.contains("HTTP 503"), "{}", f.error);
    assert_eq!(mock.requests(), 4);

    // A request error is not retried at all.
    mock.set_default(Reply::status(400));
    let events = run(&mut client, request("bad")).await;
    assert_eq!(kinds(&events), ["queued", "started", "finished"]);
    assert!(finished(&events).error.contains("invalid_request_error"));
    hub.shutdown().await;
}

#[tokio::test]
async fn error_event_after_output_fails_without_retry_and_keeps_the_output() {
    let mock = MockAnthropic::start(Reply::error_after(
        &["partial ", "answer"],
        "overloaded_error",
    ))
    .await;
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let req = request("will break");
    let id = req.command_id.clone();
    let events = run(&mut client, req).await;
    assert_eq!(
        kinds(&events),
        ["queued", "started", "output", "output", "finished"]
    );
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert!(f.error.contains("overloaded_error"), "{}", f.error);
    assert!(f.error.contains("not retried"), "{}", f.error);
    assert_eq!(mock.requests(), 1, "output was streamed, so no retry");
    let command = client
        .get_command(pb::GetCommandRequest { command_id: id })
        .await
        .unwrap()
        .into_inner();
    let result = command.result.unwrap();
    assert_eq!(result.output, "partial answer");
    assert_eq!(result.status, pb::ResultStatus::Error as i32);
    hub.shutdown().await;
}

#[tokio::test]
async fn resubmitting_a_command_id_attaches_or_is_refused() {
    let mock = MockAnthropic::start(Reply::text(&["once"])).await;
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let req = request("idempotent");
    let first = run(&mut client, req.clone()).await;
    // Same content (a spoke retrying, with a later timestamp): the same events, nothing new runs.
    let mut again = req.clone();
    again.created_at = Some(helix_mesh::proto_ext::ms_to_timestamp(
        helix_mesh::proto_ext::now_ms(),
    ));
    let second = run(&mut client, again).await;
    assert_eq!(first, second);
    assert_eq!(mock.requests(), 1);
    // Other content under the same id: refused.
    let mut other = req.clone();
    other.content = "something else".into();
    let err = client.execute(other).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(err.message().contains(&req.command_id), "{}", err.message());
    assert_eq!(mock.requests(), 1);
    hub.shutdown().await;
}

#[tokio::test]
async fn attach_after_seq_returns_exactly_the_missing_events() {
    let mock = MockAnthropic::start(Reply::text(&["a"])).await;
    mock.script([Reply::hang_after(&["one ", "two "])]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let req = request("attach");
    let id = req.command_id.clone();
    let mut stream = client.execute(req).await.unwrap().into_inner();
    let seen = read_until(&mut stream, |e| output(std::slice::from_ref(e)) == "two ").await;
    drop(stream); // the spoke goes away; the command keeps running
    assert_eq!(seen.len(), 4);

    // Attach from seq 2 while it is still running: history, then live to the end.
    let mut attached = client
        .attach(pb::AttachRequest {
            command_id: id.clone(),
            after_seq: 2,
        })
        .await
        .unwrap()
        .into_inner();
    let history = read_until(&mut attached, |e| e.seq == 4).await;
    assert_eq!(history, seen[2..].to_vec());
    // GetCommand on the running command: its output so far, no result status yet.
    let running = client
        .get_command(pb::GetCommandRequest {
            command_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(running.status, CommandStatus::Executing as i32);
    let so_far = running.result.unwrap();
    assert_eq!((so_far.output.as_str(), so_far.status), ("one two ", 0));
    mock.release();
    let live = collect(attached).await;
    assert_eq!(kinds(&live), ["finished"]);
    assert_eq!(live[0].seq, 5);

    // After the end: every event after N, and nothing before.
    let all = attach_all(&mut client, &id, 0).await;
    assert_contiguous(&all, 1);
    for n in 0..=5u64 {
        let rest = attach_all(&mut client, &id, n).await;
        assert_eq!(rest, all[n as usize..].to_vec(), "after_seq {n}");
    }
    let err = client
        .attach(pb::AttachRequest {
            command_id: id.clone(),
            after_seq: 6,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::OutOfRange);
    assert_eq!(status_of(&mut client, &id).await, CommandStatus::Completed);
    hub.shutdown().await;
}
