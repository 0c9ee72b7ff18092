//! Which route carries a command, as it changes. iroh often starts a connection on the relay
//! and moves it to a direct, hole-punched path a moment later. While a command streams,
//! [`PathWatch`] follows the connection's selected path in a task of its own (so the output
//! never waits for it), and [`RouteLog`] keeps what the command went by: the route at the
//! start, each change (a progress line, `route iroh-relay → direct after 0.4 s`), and the route
//! at the end (`route_history` on the `finished` record with `--json`). [`Routes`] ties the two
//! to one command, across reconnects.

use std::time::{Duration, Instant};

use futures::StreamExt;
use helix_mesh::transport::selected_route;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::task::AbortOnDropHandle;

use crate::{
    client::{Connected, Link},
    render::Printer,
};

/// Route changes waiting for the command's loop to take them. Changes are rare (a relayed
/// start moving to a hole-punched path, a network change); when the queue is full the watcher
/// waits, and meanwhile iroh's path stream keeps only the newest state: nothing piles up, and
/// the latest route is never lost.
const CHANGE_QUEUE: usize = 8;

/// Most changes a [`RouteLog`] lists; later ones are only counted (`changes_omitted`), so a
/// network that keeps flapping during a long command grows neither memory nor the final record
/// without bound.
pub const MAX_LOGGED_CHANGES: usize = 64;

/// One change of route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteChange {
    pub from: &'static str,
    pub to: &'static str,
    /// Since the command's first connection came up.
    pub after: Duration,
}

impl RouteChange {
    /// The progress line: `route iroh-relay → direct after 0.4 s`.
    pub fn line(&self) -> String {
        format!(
            "route {} → {} after {:.1} s",
            self.from,
            self.to,
            self.after.as_secs_f64()
        )
    }

    fn json(&self) -> Value {
        json!({
            "from": self.from,
            "to": self.to,
            "after_ms": u64::try_from(self.after.as_millis()).unwrap_or(u64::MAX),
        })
    }
}

/// The routes one command went by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteLog {
    at_start: &'static str,
    now: &'static str,
    changes: Vec<RouteChange>,
    /// Changes past [`MAX_LOGGED_CHANGES`].
    omitted: usize,
}

impl RouteLog {
    /// A command that starts on `route`.
    pub fn new(route: &'static str) -> Self {
        Self {
            at_start: route,
            now: route,
            changes: Vec::new(),
            omitted: 0,
        }
    }

    /// The route the command is on now.
    pub fn now(&self) -> &'static str {
        self.now
    }

    /// The changes so far (at most [`MAX_LOGGED_CHANGES`]).
    pub fn changes(&self) -> &[RouteChange] {
        &self.changes
    }

    /// Notes that the route is `route`, `after` the command's first connection came up. The
    /// change, when it is one.
    pub fn record(&mut self, route: &'static str, after: Duration) -> Option<RouteChange> {
        if route == self.now {
            return None;
        }
        let change = RouteChange {
            from: self.now,
            to: route,
            after,
        };
        self.now = route;
        if self.changes.len() < MAX_LOGGED_CHANGES {
            self.changes.push(change.clone());
        } else {
            self.omitted += 1;
        }
        Some(change)
    }

    /// `{"at_start", "at_end", "changes": [{"from", "to", "after_ms"}]}`, and
    /// `changes_omitted` when there were more than [`MAX_LOGGED_CHANGES`].
    pub fn json(&self) -> Value {
        let mut v = json!({
            "at_start": self.at_start,
            "at_end": self.now,
            "changes": self.changes.iter().map(RouteChange::json).collect::<Vec<_>>(),
        });
        if self.omitted > 0
            && let Some(obj) = v.as_object_mut()
        {
            obj.insert("changes_omitted".into(), self.omitted.into());
        }
        v
    }
}

/// A route the watcher saw, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub route: &'static str,
    pub at: Instant,
}

/// Follows the selected path of one iroh connection in a task of its own, until the
/// connection closes or this is dropped (the command ended). On the local listener there is
/// nothing to follow.
#[derive(Debug)]
pub struct PathWatch {
    changes: Option<mpsc::Receiver<Seen>>,
    _task: Option<AbortOnDropHandle<()>>,
}

impl PathWatch {
    /// Starts following `conn`, from the route it had when it came up: a change since then is
    /// the first thing it reports.
    pub fn start(conn: &Connected) -> Self {
        let Link::Iroh { conn: iroh, .. } = &conn.link else {
            return Self {
                changes: None,
                _task: None,
            };
        };
        let (tx, rx) = mpsc::channel(CHANGE_QUEUE);
        let iroh = iroh.clone();
        let mut last = conn.route_at_connect;
        let task = tokio::spawn(async move {
            // The first item is the paths as they are now; then one per change. The stream
            // ends when the connection closes.
            let mut paths = iroh.paths_stream();
            while let Some(list) = paths.next().await {
                // No path selected: a moment inside a change; the next snapshot says where
                // it went.
                let Some(route) = selected_route(&list) else {
                    continue;
                };
                let route = route.name();
                if route == last {
                    continue;
                }
                last = route;
                let seen = Seen {
                    route,
                    at: Instant::now(),
                };
                if tx.send(seen).await.is_err() {
                    return;
                }
            }
        });
        Self {
            changes: Some(rx),
            _task: Some(AbortOnDropHandle::new(task)),
        }
    }

    /// The next change. Never returns once the connection has closed, or on the local
    /// listener, so a `select!` branch on it just stays quiet. Cancel safe.
    pub async fn changed(&mut self) -> Seen {
        if let Some(changes) = &mut self.changes {
            if let Some(seen) = changes.recv().await {
                return seen;
            }
            self.changes = None;
        }
        std::future::pending().await
    }

    /// A change that is already waiting, without waiting for one.
    pub fn try_changed(&mut self) -> Option<Seen> {
        self.changes.as_mut()?.try_recv().ok()
    }
}

/// One command's routes: its log, timed from its first connection, and the watcher of the
/// connection it is on now.
#[derive(Debug)]
pub struct Routes {
    log: RouteLog,
    origin: Instant,
    watch: PathWatch,
}

impl Routes {
    /// A command that starts on `conn`.
    pub fn start(conn: &Connected) -> Self {
        Self {
            log: RouteLog::new(conn.route_at_connect),
            origin: conn.connected_at,
            watch: PathWatch::start(conn),
        }
    }

    /// What the command went by so far.
    pub fn log(&self) -> &RouteLog {
        &self.log
    }

    /// The command goes on over `conn` (it reconnected): its route is a change when it
    /// differs, and `conn` is followed from now on.
    pub fn reconnected(&mut self, conn: &Connected, printer: &mut Printer) {
        self.watch = PathWatch::start(conn);
        self.seen(
            Seen {
                route: conn.route_at_connect,
                at: conn.connected_at,
            },
            printer,
        );
    }

    /// The next change the watcher reports (hand it to [`Routes::seen`]). Cancel safe.
    pub async fn changed(&mut self) -> Seen {
        self.watch.changed().await
    }

    /// Notes what the watcher saw, saying so when it is a change.
    pub fn seen(&mut self, seen: Seen, printer: &mut Printer) {
        let after = seen.at.saturating_duration_since(self.origin);
        if let Some(change) = self.log.record(seen.route, after) {
            printer.progress(&change.line());
        }
    }

    /// Takes the changes already waiting, without waiting: before an event is shown, so its
    /// record names the route it came by.
    pub fn catch_up(&mut self, printer: &mut Printer) {
        while let Some(seen) = self.watch.try_changed() {
            self.seen(seen, printer);
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;

    use super::*;

    const RELAY: &str = "iroh-relay";
    const DIRECT: &str = "direct";

    #[test]
    fn a_change_is_one_progress_line_with_one_decimal() {
        let change = |ms| RouteChange {
            from: RELAY,
            to: DIRECT,
            after: Duration::from_millis(ms),
        };
        assert_eq!(change(412).line(), "route iroh-relay → direct after 0.4 s");
        assert_eq!(change(0).line(), "route iroh-relay → direct after 0.0 s");
        assert_eq!(
            change(1_960).line(),
            "route iroh-relay → direct after 2.0 s"
        );
        assert_eq!(
            change(75_049).line(),
            "route iroh-relay → direct after 75.0 s"
        );
    }

    #[test]
    fn only_a_different_route_is_a_change() {
        let mut log = RouteLog::new(RELAY);
        assert_eq!(log.record(RELAY, Duration::from_millis(5)), None);
        let change = log.record(DIRECT, Duration::from_millis(412)).unwrap();
        assert_eq!(
            change,
            RouteChange {
                from: RELAY,
                to: DIRECT,
                after: Duration::from_millis(412)
            }
        );
        assert_eq!(log.record(DIRECT, Duration::from_millis(900)), None);
        assert_eq!(log.now(), DIRECT);
        assert_eq!(log.changes(), [change]);
    }

    #[test]
    fn the_history_says_start_end_and_every_change() {
        let mut log = RouteLog::new(RELAY);
        insta::assert_snapshot!(log.json().to_string(), @r#"{"at_end":"iroh-relay","at_start":"iroh-relay","changes":[]}"#);
        log.record(DIRECT, Duration::from_micros(412_700));
        log.record(RELAY, Duration::from_millis(3_000));
        log.record(DIRECT, Duration::from_millis(3_250));
        insta::assert_snapshot!(log.json().to_string(), @r#"{"at_end":"direct","at_start":"iroh-relay","changes":[{"after_ms":412,"from":"iroh-relay","to":"direct"},{"after_ms":3000,"from":"direct","to":"iroh-relay"},{"after_ms":3250,"from":"iroh-relay","to":"direct"}]}"#);
    }

    #[test]
    fn a_flapping_route_lists_the_first_changes_and_counts_the_rest() {
        let mut log = RouteLog::new(RELAY);
        let total = MAX_LOGGED_CHANGES + 3;
        for i in 0..total {
            let route = if i % 2 == 0 { DIRECT } else { RELAY };
            assert!(log.record(route, Duration::from_millis(i as u64)).is_some());
        }
        assert_eq!(log.changes().len(), MAX_LOGGED_CHANGES);
        let json = log.json();
        assert_eq!(json["changes_omitted"], 3);
        assert_eq!(json["at_end"], if total % 2 == 1 { DIRECT } else { RELAY });
        assert_eq!(json["changes"][0]["to"], DIRECT);
    }

    #[test]
    fn nothing_to_watch_on_the_local_listener_stays_quiet() {
        let mut watch = PathWatch {
            changes: None,
            _task: None,
        };
        assert_eq!(watch.try_changed(), None);
        assert_eq!(watch.changed().now_or_never(), None);
    }

    #[test]
    fn a_closed_watcher_goes_quiet_instead_of_ending_the_command() {
        let (tx, rx) = mpsc::channel(CHANGE_QUEUE);
        let at = Instant::now();
        tx.try_send(Seen { route: DIRECT, at }).unwrap();
        drop(tx);
        let mut watch = PathWatch {
            changes: Some(rx),
            _task: None,
        };
        assert_eq!(
            watch.changed().now_or_never(),
            Some(Seen { route: DIRECT, at })
        );
        assert_eq!(watch.changed().now_or_never(), None);
        assert_eq!(watch.try_changed(), None);
    }
}
