//! Cancel, queue limits, the Watch broadcast, missing credentials, staged shutdown.

use std::time::Duration;

use helix_mesh::pb::{self, CommandStatus};
use tokio_stream::StreamExt;

use crate::support::{
    TestHub, attach_all, collect, config_for, finished, is_output, kinds,
    mock_anthropic::{MockAnthropic, Reply},
    output, read_until, request, status_of,
};

#[tokio::test]
async fn cancel_a_queued_and_a_running_command() {
    let mock = MockAnthropic::start(Reply::hang_after(&["working…"])).await;
    let mut config = config_for(&mock);
    config.max_concurrent = 1;
    let hub = TestHub::start(config).await;
    let mut client = hub.client().await;

    let running = request("long job");
    let running_id = running.command_id.clone();
    let mut running_stream = client.execute(running).await.unwrap().into_inner();
    read_until(&mut running_stream, is_output).await;

    let queued = request("waiting job");
    let queued_id = queued.command_id.clone();
    let mut queued_stream = client.execute(queued).await.unwrap().into_inner();
    let first = read_until(&mut queued_stream, |_| true).await;
    assert_eq!(kinds(&first), ["queued"]);

    // Queued: removed before it ever runs.
    let answer = client
        .cancel(pb::CancelRequest {
            command_id: queued_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, CommandStatus::Cancelled as i32);
    assert!(answer.was_queued);
    let rest = collect(queued_stream).await;
    assert_eq!(kinds(&rest), ["finished"]);
    assert_eq!(finished(&rest).attempts, 0);

    // Running: the provider's HTTP stream is aborted.
    assert_eq!(mock.in_flight(), 1);
    let answer = client
        .cancel(pb::CancelRequest {
            command_id: running_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status, CommandStatus::Cancelled as i32);
    assert!(!answer.was_queued);
    let rest = collect(running_stream).await;
    let f = finished(&rest);
    assert_eq!(f.status, CommandStatus::Cancelled as i32);
    mock.wait_until("the aborted request to close", |m| m.in_flight() == 0)
        .await;
    assert_eq!(
        mock.requests(),
        1,
        "the cancelled queued command never reached the provider"
    );

    // Cancelling again: it has finished. Unknown ids: not found.
    let err = client
        .cancel(pb::CancelRequest {
            command_id: running_id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    assert!(err.message().contains("cancelled"), "{}", err.message());
    let err = client
        .cancel(pb::CancelRequest {
            command_id: uuid::Uuid::new_v4().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert_eq!(
        status_of(&mut client, &running_id).await,
        CommandStatus::Cancelled
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn a_full_queue_answers_resource_exhausted_and_loses_nothing() {
    let mock = MockAnthropic::start(Reply::hang_after(&["x"])).await;
    let mut config = config_for(&mock);
    config.max_concurrent = 1;
    config.queue_capacity = 2;
    let hub = TestHub::start(config).await;
    let mut client = hub.client().await;
    let running = request("running");
    let mut first = client.execute(running.clone()).await.unwrap().into_inner();
    read_until(&mut first, is_output).await;
    let waiting: Vec<_> = futures::future::join_all((0..2).map(|i| {
        let mut c = client.clone();
        async move {
            c.execute(request(&format!("waiting {i}")))
                .await
                .unwrap()
                .into_inner()
        }
    }))
    .await;
    let err = client.execute(request("one too many")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted);
    assert!(err.message().contains("queue is full"), "{}", err.message());
    // A spoke retrying a command that is already here still attaches while the queue is full.
    let mut again = client.execute(running).await.unwrap().into_inner();
    let replay = read_until(&mut again, is_output).await;
    assert_eq!(kinds(&replay), ["queued", "started", "output"]);

    mock.set_default(Reply::text(&["done"]));
    mock.release();
    assert_eq!(
        finished(&collect(first).await).status,
        CommandStatus::Completed as i32
    );
    for stream in waiting {
        let events = collect(stream).await;
        assert_eq!(output(&events), "done");
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn watch_sees_every_status_change() {
    let mock = MockAnthropic::start(Reply::text(&["ok"])).await;
    mock.script([Reply::status(400)]);
    let hub = TestHub::start(config_for(&mock)).await;
    let mut client = hub.client().await;
    let mut watch = client
        .watch(pb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();
    // A second watcher, like another device.
    let mut other = hub
        .client()
        .await
        .watch(pb::WatchRequest {})
        .await
        .unwrap()
        .into_inner();

    let fails = request("fails");
    let works = request("works");
    let (fails_id, works_id) = (fails.command_id.clone(), works.command_id.clone());
    collect(client.execute(fails).await.unwrap().into_inner()).await;
    collect(client.execute(works).await.unwrap().into_inner()).await;

    for stream in [&mut watch, &mut other] {
        let mut changes = Vec::new();
        while changes.len() < 6 {
            let c = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            changes.push((
                c.command_id.clone(),
                CommandStatus::try_from(c.status).unwrap(),
                c.error.clone(),
            ));
        }
        let expected = [
            (fails_id.clone(), CommandStatus::Pending),
            (fails_id.clone(), CommandStatus::Executing),
            (fails_id.clone(), CommandStatus::Failed),
            (works_id.clone(), CommandStatus::Pending),
            (works_id.clone(), CommandStatus::Executing),
            (works_id.clone(), CommandStatus::Completed),
        ];
        assert_eq!(
            changes
                .iter()
                .map(|(id, s, _)| (id.clone(), *s))
                .collect::<Vec<_>>(),
            expected
        );
        assert!(
            changes[2].2.contains("HTTP 400"),
            "failed change carries the error"
        );
    }
    hub.shutdown().await;
}

#[tokio::test]
async fn no_credential_fails_the_command_with_the_login_to_run() {
    let mock = MockAnthropic::start(Reply::text(&["never"])).await;
    let hub = TestHub::start_without_credentials(config_for(&mock)).await;
    let mut client = hub.client().await;
    let events = run_to_end(&mut client, request("hi")).await;
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert!(
        f.error.contains("helix-hub login anthropic --api-key"),
        "{}",
        f.error
    );
    assert_eq!(mock.requests(), 0);

    // Other providers name their own login.
    let mut req = request("hi");
    req.provider = pb::Provider::GoogleGemini as i32;
    let f = finished(&run_to_end(&mut client, req).await);
    assert!(
        f.error.contains("helix-hub login google-gemini --api-key"),
        "{}",
        f.error
    );
    let mut req = request("hi");
    req.provider = pb::Provider::OpenaiCodex as i32;
    let f = finished(&run_to_end(&mut client, req).await);
    assert!(
        f.error
            .contains("run `helix-hub login openai-codex` on the hub"),
        "{}",
        f.error
    );

    let info = client
        .get_hub_info(pb::GetHubInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let anthropic = &info.providers[0];
    assert_eq!(
        (
            anthropic.name.as_str(),
            anthropic.supported,
            anthropic.has_credential
        ),
        ("anthropic", true, false)
    );
    assert_eq!(info.limits.unwrap().max_concurrent, 5);
    hub.shutdown().await;
}

async fn run_to_end(
    client: &mut helix_spoke::client::HubClient,
    req: pb::ExecuteRequest,
) -> Vec<pb::CommandEvent> {
    collect(client.execute(req).await.unwrap().into_inner()).await
}

#[tokio::test]
async fn shutdown_drains_running_commands_and_keeps_queued_ones() {
    let mock =
        MockAnthropic::start(Reply::slow(&["a", "b", "c"], Duration::from_millis(100))).await;
    let mut config = config_for(&mock);
    config.max_concurrent = 1;
    let mut hub = TestHub::start(config).await;
    let mut client = hub.client().await;
    let running = request("finishes during drain");
    let queued = request("runs after restart");
    let (running_id, queued_id) = (running.command_id.clone(), queued.command_id.clone());
    let mut stream = client.execute(running).await.unwrap().into_inner();
    read_until(&mut stream, is_output).await;
    let _queued_stream = client.execute(queued).await.unwrap().into_inner();

    hub.restart().await; // staged shutdown, then a new hub on the same data dir
    let mut client = hub.client().await;
    let running_events = attach_all(&mut client, &running_id, 0).await;
    assert_eq!(output(&running_events), "abc", "the drain let it finish");
    assert_eq!(
        finished(&running_events).status,
        CommandStatus::Completed as i32
    );
    let queued_events = attach_all(&mut client, &queued_id, 0).await;
    assert_eq!(
        output(&queued_events),
        "abc",
        "queued work survived the restart"
    );
    hub.shutdown().await;
}

#[tokio::test]
async fn shutdown_past_the_drain_deadline_fails_running_commands_clearly() {
    let mock = MockAnthropic::start(Reply::hang_after(&["stuck"])).await;
    let mut config = config_for(&mock);
    config.drain_timeout = Duration::from_millis(200);
    let mut hub = TestHub::start(config).await;
    let mut client = hub.client().await;
    let req = request("never ends");
    let id = req.command_id.clone();
    let mut stream = client.execute(req).await.unwrap().into_inner();
    read_until(&mut stream, is_output).await;
    hub.restart().await;
    let mut client = hub.client().await;
    let events = attach_all(&mut client, &id, 0).await;
    let f = finished(&events);
    assert_eq!(f.status, CommandStatus::Failed as i32);
    assert_eq!(f.error, helix_hub::executor::SHUTDOWN_ERROR);
    assert_eq!(
        output(&events),
        "stuck",
        "output written before the stop is kept"
    );
    hub.shutdown().await;
}
