//! The change feed: the published tables' columns, read once, and one PostgreSQL connection
//! that LISTENs on [`NOTIFY_CHANNEL`] and hands every change to the registry, in commit order.

use std::{collections::HashMap, sync::Arc};

use futures::StreamExt;
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, NoTls};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{NOTIFY_CHANNEL, Realtime, binding::Change, binding::Tables};

/// Why the feed could not start or stopped (each message carries its cause).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    #[error("connecting to PostgreSQL for Realtime: {0}")]
    Connect(tokio_postgres::Error),
    #[error("reading the supabase_realtime publication: {0}")]
    Tables(tokio_postgres::Error),
    #[error("LISTEN {NOTIFY_CHANNEL}: {0}")]
    Listen(tokio_postgres::Error),
    #[error("the Realtime connection to PostgreSQL failed: {0}")]
    Lost(tokio_postgres::Error),
    #[error("the Realtime connection to PostgreSQL closed")]
    Closed,
}

/// The tables of the `supabase_realtime` publication and their columns, in column order.
pub async fn published_tables(client: &Client) -> Result<Tables, ListenError> {
    let rows = client
        .query(
            "select p.schemaname::text, p.tablename::text, a.attname::text, t.typname::text
               from pg_publication_tables p
               join pg_namespace n on n.nspname = p.schemaname
               join pg_class c on c.relnamespace = n.oid and c.relname = p.tablename
               join pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
               join pg_type t on t.oid = a.atttypid
              where p.pubname = 'supabase_realtime'
              order by 1, 2, a.attnum",
            &[],
        )
        .await
        .map_err(ListenError::Tables)?;
    let mut columns: HashMap<(String, String), Vec<serde_json::Value>> = HashMap::new();
    for row in rows {
        let (schema, table, name, kind): (String, String, String, String) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        columns
            .entry((schema, table))
            .or_default()
            .push(json!({"name": name, "type": kind}));
    }
    Ok(Tables { columns })
}

/// A running feed; it ends with an error when its connection fails, or `Ok` once stopped.
#[derive(Debug)]
pub struct Feed {
    pub task: JoinHandle<Result<(), ListenError>>,
    /// Kept so the connection stays open (dropping the client ends it).
    _client: Client,
}

/// Connects to `url`, LISTENs, and returns once the LISTEN is in place: every change
/// committed after that reaches `realtime`'s registry.
pub async fn start(
    url: &str,
    realtime: Arc<Realtime>,
    stop: CancellationToken,
) -> Result<Feed, ListenError> {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(ListenError::Connect)?;
    let task = tokio::spawn(async move {
        let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return Ok(()),
                m = messages.next() => m,
            };
            match message {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    match serde_json::from_str::<Change>(n.payload()) {
                        Ok(change) => realtime.registry.deliver(&change),
                        Err(e) => {
                            warn!(error = %e, "ignoring a change notification that does not parse")
                        }
                    }
                }
                Some(Ok(AsyncMessage::Notice(notice))) => {
                    debug!(notice = %notice.message(), "PostgreSQL notice");
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(ListenError::Lost(e)),
                None => return Err(ListenError::Closed),
            }
        }
    });
    client
        .batch_execute(&format!("LISTEN {NOTIFY_CHANNEL}"))
        .await
        .map_err(ListenError::Listen)?;
    Ok(Feed {
        task,
        _client: client,
    })
}
