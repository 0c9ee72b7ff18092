//! The executor's scheduling around a command's first output.

use std::time::Duration;

use futures::FutureExt;
use helix_mesh::pb::Provider;
use tokio::time::timeout;

use super::*;
use crate::{
    credentials::Secret,
    provider::{OutputStream, ProviderExec, ProviderRequest},
};

/// Answers at once with one chunk, and has nothing after it.
#[derive(Debug)]
struct OneChunk;

impl ProviderExec for OneChunk {
    fn execute(&self, _request: ProviderRequest) -> OutputStream {
        Box::pin(futures::stream::iter([Ok("hello".to_owned())]))
    }
}

// A current-thread runtime, as `#[tokio::test]` gives: the worker and this test's task share
// one thread, so which of them runs first is decided by the executor alone.
#[tokio::test]
async fn the_first_output_is_seen_before_the_worker_commits_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let bus = Bus::new();
    let (journal, _) = Journal::open(dir.path(), bus.clone()).unwrap();
    let credentials = CredentialStore::in_dir(dir.path());
    credentials
        .set_api_key(Provider::Anthropic, Secret::new("sk-test"))
        .unwrap();
    let providers = Providers::default().with(Provider::Anthropic, Arc::new(OneChunk));
    let executor = Executor::start(
        journal,
        bus.clone(),
        providers,
        credentials,
        Arc::new(HubConfig::default()),
        Vec::new(),
        CancellationToken::new(),
    );
    let cmd = NewCommand::for_test(Uuid::new_v4());
    let mut live = bus.subscribe_command(cmd.command_id);
    assert_eq!(executor.submit(cmd).await.unwrap(), Submitted::New);

    let mut kinds = Vec::new();
    let output = loop {
        let event = timeout(Duration::from_secs(5), live.recv())
            .await
            .unwrap()
            .unwrap();
        kinds.push(event.kind.name());
        if matches!(event.kind, EventKind::Output { .. }) {
            break event;
        }
    };
    assert_eq!(kinds, ["queued", "started", "output"]);
    // The provider had nothing after its chunk, so `finished` comes next. Had the worker gone
    // on to commit it before yielding, it would already be waiting here. (Polled once, not
    // awaited: awaiting would let the worker run.)
    assert!(
        live.recv().now_or_never().is_none(),
        "the worker committed `finished` before the first output could be sent"
    );
    let finished = timeout(Duration::from_secs(5), live.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(finished.kind.name(), "finished");
    assert_eq!(finished.seq, output.seq + 1);
    executor.shutdown(Duration::from_secs(5)).await;
}
