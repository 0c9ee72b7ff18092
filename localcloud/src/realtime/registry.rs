//! Who listens to what: every open socket with its bounded outbox and its joined channels (the
//! user whose token joined each, when that token expires, its bindings). The LISTEN task fans
//! each change out from here with `try_send`; a socket whose outbox is full is disconnected
//! (the defined answer to a client that does not keep up). One lock, never held across an
//! `.await`.

use std::{
    collections::HashMap,
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::{
    MAX_CHANNELS_PER_SOCKET, MAX_SOCKETS,
    binding::{Binding, Change, Tables},
    phoenix::Msg,
};
use crate::jwt::now_secs;

/// A socket's number, for the registry and its log span.
pub type ConnId = u64;

/// A joined channel.
#[derive(Debug, Clone)]
pub struct Channel {
    pub join_ref: Option<String>,
    /// The `sub` of the token that joined (or last refreshed) it; none for the anon key.
    pub sub: Option<String>,
    /// That token's expiry (seconds since the epoch).
    pub exp: i64,
    pub bindings: Vec<Binding>,
}

struct Conn {
    outbox: mpsc::Sender<Msg>,
    /// Cancelled to disconnect the socket (its outbox overflowed).
    kick: CancellationToken,
    channels: HashMap<String, Channel>,
}

/// Refusals of the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("too many Realtime sockets are open ({MAX_SOCKETS})")]
    TooManySockets,
    #[error("Too many channels: at most {MAX_CHANNELS_PER_SOCKET} per socket")]
    TooManyChannels,
}

#[derive(Debug)]
pub struct Registry {
    conns: Mutex<HashMap<ConnId, Conn>>,
    tables: Tables,
    next_conn: AtomicU64,
    next_binding: AtomicU64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("channels", &self.channels.len())
            .finish_non_exhaustive()
    }
}

impl Registry {
    pub fn new(tables: Tables) -> Self {
        Self {
            conns: Mutex::new(HashMap::new()),
            tables,
            next_conn: AtomicU64::new(1),
            next_binding: AtomicU64::new(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ConnId, Conn>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// A fresh id for a `postgres_changes` binding (unique in this run).
    pub fn next_binding_id(&self) -> u64 {
        self.next_binding.fetch_add(1, Ordering::Relaxed)
    }

    /// Registers a socket.
    pub fn open(
        &self,
        outbox: mpsc::Sender<Msg>,
        kick: CancellationToken,
    ) -> Result<ConnId, Refused> {
        let mut conns = self.lock();
        if conns.len() >= MAX_SOCKETS {
            return Err(Refused::TooManySockets);
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        conns.insert(
            id,
            Conn {
                outbox,
                kick,
                channels: HashMap::new(),
            },
        );
        Ok(id)
    }

    /// Forgets a socket and its channels.
    pub fn close(&self, conn: ConnId) {
        self.lock().remove(&conn);
    }

    /// How many sockets are open.
    pub fn sockets(&self) -> usize {
        self.lock().len()
    }

    /// Joins `topic`; a channel already joined on that topic is replaced and returned.
    pub fn join(
        &self,
        conn: ConnId,
        topic: &str,
        channel: Channel,
    ) -> Result<Option<Channel>, Refused> {
        let mut conns = self.lock();
        let Some(c) = conns.get_mut(&conn) else {
            return Ok(None);
        };
        if !c.channels.contains_key(topic) && c.channels.len() >= MAX_CHANNELS_PER_SOCKET {
            return Err(Refused::TooManyChannels);
        }
        Ok(c.channels.insert(topic.to_owned(), channel))
    }

    /// Leaves `topic`; the channel that was joined, if any.
    pub fn leave(&self, conn: ConnId, topic: &str) -> Option<Channel> {
        self.lock().get_mut(&conn)?.channels.remove(topic)
    }

    /// The join ref of `topic` if it is joined.
    pub fn joined(&self, conn: ConnId, topic: &str) -> Option<Option<String>> {
        let conns = self.lock();
        conns
            .get(&conn)?
            .channels
            .get(topic)
            .map(|c| c.join_ref.clone())
    }

    /// A refreshed token for a joined channel.
    pub fn refresh_token(&self, conn: ConnId, topic: &str, sub: Option<String>, exp: i64) {
        if let Some(channel) = self
            .lock()
            .get_mut(&conn)
            .and_then(|c| c.channels.get_mut(topic))
        {
            channel.sub = sub;
            channel.exp = exp;
        }
    }

    /// When the next token of this socket's channels expires.
    pub fn next_expiry(&self, conn: ConnId) -> Option<i64> {
        self.lock()
            .get(&conn)?
            .channels
            .values()
            .map(|c| c.exp)
            .min()
    }

    /// Removes the channels whose token has expired by `now`; their topics and join refs.
    pub fn take_expired(&self, conn: ConnId, now: i64) -> Vec<(String, Option<String>)> {
        let mut conns = self.lock();
        let Some(c) = conns.get_mut(&conn) else {
            return Vec::new();
        };
        let expired: Vec<String> = c
            .channels
            .iter()
            .filter(|(_, ch)| ch.exp <= now)
            .map(|(t, _)| t.clone())
            .collect();
        expired
            .into_iter()
            .filter_map(|t| c.channels.remove(&t).map(|ch| (t, ch.join_ref)))
            .collect()
    }

    /// Sends `change` to every channel with a matching binding whose user may see the row: one
    /// `postgres_changes` message per channel, carrying the ids of its bindings that match.
    pub fn deliver(&self, change: &Change) {
        let columns = self
            .tables
            .columns
            .get(&(change.schema.clone(), change.table.clone()))
            .cloned()
            .unwrap_or_default();
        let mut data = json!({
            "schema": change.schema, "table": change.table,
            "commit_timestamp": change.commit_timestamp, "type": change.kind,
            "columns": columns, "errors": change.errors,
        });
        if change.kind != "DELETE" {
            data["record"] = change.record.clone().unwrap_or_else(|| json!({}));
        }
        if change.kind != "INSERT" {
            data["old_record"] = change.old_record.clone().unwrap_or_else(|| json!({}));
        }
        let now = now_secs();
        let mut conns = self.lock();
        let mut overflowed = Vec::new();
        for (id, conn) in conns.iter() {
            for (topic, channel) in &conn.channels {
                let visible = match &change.user_id {
                    Some(owner) => channel.sub.as_ref() == Some(owner),
                    // A row without an owner column is everyone's (a table without RLS).
                    None => true,
                };
                if !visible || channel.exp <= now {
                    continue;
                }
                let ids: Vec<u64> = channel
                    .bindings
                    .iter()
                    .filter(|b| b.matches(change))
                    .map(|b| b.id)
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                let msg = Msg::push(
                    None,
                    topic,
                    "postgres_changes",
                    json!({"ids": ids, "data": data}),
                );
                if conn.outbox.try_send(msg).is_err() {
                    overflowed.push(*id);
                    break;
                }
            }
        }
        for id in overflowed {
            if let Some(conn) = conns.remove(&id) {
                warn!(
                    conn = id,
                    "a Realtime socket fell behind its changes; disconnecting it"
                );
                conn.kick.cancel();
            }
        }
    }
}
