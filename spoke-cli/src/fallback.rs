//! The hub or the cloud route: with `--via auto`, a spoke dials its hub over iroh and, at the
//! same time, checks that it may use the cloud route (signed in to the cloud; that check may
//! have to refresh the session over the network). When no iroh route comes up within
//! [`IROH_WINDOW`], or the dial fails as unreachable, the command goes through the table
//! instead.
//!
//! The rule: a spoke that cannot reach its hub has its command on the way through the cloud
//! route within [`FALLBACK_WITHIN`] (3 s), counted from the start of the `helix` process, which
//! is how `helix-bench` measures it.

use std::{future::Future, time::Duration};

use crate::client::ConnectError;

/// The promise: a command without an iroh route is on its way through the cloud route within
/// this long.
pub const FALLBACK_WITHIN: Duration = Duration::from_secs(3);

/// What the process's start (before `main`) and the spoke's set-up get of [`FALLBACK_WITHIN`]:
/// a small share, well above what they take (docs/performance.md); iroh gets the rest.
const START_RESERVE: Duration = Duration::from_millis(50);

/// How long iroh may take to reach the hub before the cloud route takes over, counted from
/// when the dial and the cloud check start (together).
pub const IROH_WINDOW: Duration = FALLBACK_WITHIN.saturating_sub(START_RESERVE);

/// Which way a command goes.
#[derive(Debug)]
pub enum Route<C> {
    /// iroh (or the local listener) reached the hub; `cloud` says whether the cloud route
    /// is available too.
    Hub { conn: C, cloud: bool },
    /// No route to the hub came up in time, and the cloud route is available.
    Cloud,
}

/// Races `connecting` against [`IROH_WINDOW`] while `cloud_available` runs alongside, by
/// the rules of `race` (below).
pub async fn hub_or_cloud<C>(
    connecting: impl Future<Output = Result<C, ConnectError>>,
    cloud_available: impl Future<Output = bool>,
) -> Result<Route<C>, ConnectError> {
    race(connecting, cloud_available, tokio::time::sleep(IROH_WINDOW)).await
}

/// The rules, with the window as a future so tests can decide when it ends:
/// - the dial succeeds: [`Route::Hub`], after the cloud check has finished (it may be
///   writing a refreshed session, which must not be cut off half-way);
/// - the dial fails as unreachable, or the window ends first: [`Route::Cloud`] once the cloud
///   check says yes; when it says no, the dial's own error (or, after the window, the dial
///   goes on to its own end);
/// - the dial fails any other way (a refusal, say): that error, as it is.
async fn race<C>(
    connecting: impl Future<Output = Result<C, ConnectError>>,
    cloud_available: impl Future<Output = bool>,
    window: impl Future<Output = ()>,
) -> Result<Route<C>, ConnectError> {
    tokio::pin!(connecting, cloud_available, window);
    let mut cloud: Option<bool> = None;
    let mut window_over = false;
    loop {
        tokio::select! {
            biased;
            dialed = &mut connecting => {
                let cloud = match cloud {
                    Some(known) => known,
                    None => (&mut cloud_available).await,
                };
                return match dialed {
                    Ok(conn) => Ok(Route::Hub { conn, cloud }),
                    Err(e) if e.hub_unreachable() && cloud => Ok(Route::Cloud),
                    Err(e) => Err(e),
                };
            }
            known = &mut cloud_available, if cloud.is_none() => {
                if known && window_over {
                    return Ok(Route::Cloud);
                }
                cloud = Some(known);
            }
            () = &mut window, if !window_over => {
                if cloud == Some(true) {
                    return Ok(Route::Cloud);
                }
                window_over = true;
            }
        }
    }
}

/// The progress line when the cloud route takes over: "…; `instead`".
pub fn no_route(instead: &str) -> String {
    format!(
        "no iroh route to the hub within {}s; {instead}",
        FALLBACK_WITHIN.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    use helix_mesh::iroh_grpc::DialError;
    use tokio::sync::oneshot;

    use super::*;

    /// A future that ends when the test sends to it.
    fn when<T>() -> (oneshot::Sender<T>, impl Future<Output = T>) {
        let (tx, rx) = oneshot::channel::<T>();
        (tx, async move {
            match rx.await {
                Ok(v) => v,
                Err(_) => std::future::pending().await,
            }
        })
    }

    fn unreachable() -> ConnectError {
        ConnectError::Dial(DialError::Timeout(Duration::from_secs(1)))
    }

    fn refusal() -> ConnectError {
        ConnectError::Dial(DialError::Refused("not paired".into()))
    }

    /// Lets the other side of a `join!`/`select!` run until it waits again.
    async fn settle() {
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }

    /// Polls `race` while `driver` sends its events one at a time. The race must have decided
    /// once the driver is done: a broken rule fails the test instead of hanging it.
    async fn decided(
        race: impl Future<Output = Result<Route<u32>, ConnectError>>,
        driver: impl Future<Output = ()>,
    ) -> Result<Route<u32>, ConnectError> {
        use futures::FutureExt;
        tokio::pin!(race);
        tokio::select! {
            biased;
            route = &mut race => return route,
            () = async { driver.await; settle().await } => {}
        }
        race.now_or_never().expect("the race had not decided")
    }

    /// The error `route` must be: whether it means unreachable, or refused, and its text.
    fn error(route: Result<Route<u32>, ConnectError>) -> (bool, bool, String) {
        match route {
            Err(e) => (e.hub_unreachable(), e.refused_by_hub(), e.to_string()),
            Ok(other) => panic!("not an error: {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_window_runs_while_the_cloud_check_is_still_refreshing() {
        let (dial_tx, dial) = when::<Result<u32, ConnectError>>();
        let (cloud_tx, cloud) = when::<bool>();
        let (window_tx, window) = when::<()>();
        let started = Arc::new(AtomicBool::new(false));
        let window = {
            let started = started.clone();
            async move {
                started.store(true, Ordering::SeqCst);
                window.await
            }
        };
        let driver = async {
            settle().await;
            assert!(
                started.load(Ordering::SeqCst),
                "the window waited for the cloud check"
            );
            window_tx.send(()).unwrap();
            settle().await;
            cloud_tx.send(true).unwrap();
            settle().await;
            // Too late: the race has already chosen the cloud route.
            let _ = dial_tx.send(Ok(7));
        };
        let route = decided(race(dial, cloud, window), driver).await;
        assert!(matches!(route, Ok(Route::Cloud)), "{route:?}");
    }

    #[tokio::test]
    async fn the_cloud_route_is_taken_as_the_window_ends_when_the_cloud_already_said_yes() {
        let (_dial_tx, dial) = when::<Result<u32, ConnectError>>();
        let (window_tx, window) = when::<()>();
        let driver = async {
            settle().await;
            window_tx.send(()).unwrap();
        };
        let route = decided(race(dial, async { true }, window), driver).await;
        assert!(matches!(route, Ok(Route::Cloud)), "{route:?}");
    }

    #[tokio::test]
    async fn a_direct_route_waits_for_the_cloud_check_to_finish() {
        let (dial_tx, dial) = when::<Result<u32, ConnectError>>();
        let (cloud_tx, cloud) = when::<bool>();
        let finished = Arc::new(AtomicBool::new(false));
        let cloud = {
            let finished = finished.clone();
            async move {
                let known = cloud.await;
                finished.store(true, Ordering::SeqCst);
                known
            }
        };
        let driver = async {
            settle().await;
            dial_tx.send(Ok(7)).unwrap();
            settle().await;
            assert!(!finished.load(Ordering::SeqCst));
            cloud_tx.send(true).unwrap();
        };
        let route = decided(race(dial, cloud, std::future::pending()), driver).await;
        assert!(
            matches!(
                route,
                Ok(Route::Hub {
                    conn: 7,
                    cloud: true
                })
            ),
            "{route:?}"
        );
        assert!(
            finished.load(Ordering::SeqCst),
            "the cloud check was cut off"
        );
    }

    #[tokio::test]
    async fn without_the_cloud_the_dial_goes_on_past_the_window() {
        let (dial_tx, dial) = when::<Result<u32, ConnectError>>();
        let (window_tx, window) = when::<()>();
        let driver = async {
            settle().await;
            window_tx.send(()).unwrap();
            settle().await;
            dial_tx.send(Ok(7)).unwrap();
        };
        let route = decided(race(dial, async { false }, window), driver).await;
        assert!(
            matches!(
                route,
                Ok(Route::Hub {
                    conn: 7,
                    cloud: false
                })
            ),
            "{route:?}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_hub_goes_to_the_cloud_route_before_the_window_ends() {
        let route = decided(
            race(
                async { Err(unreachable()) },
                async { true },
                std::future::pending(),
            ),
            async {},
        )
        .await;
        assert!(matches!(route, Ok(Route::Cloud)), "{route:?}");
    }

    #[tokio::test]
    async fn an_unreachable_hub_without_the_cloud_is_the_dials_error() {
        let route = race(
            async { Err(unreachable()) },
            async { false },
            std::future::pending(),
        );
        assert_eq!(
            error(decided(route, async {}).await),
            (true, false, unreachable().to_string())
        );
    }

    #[tokio::test]
    async fn a_refusal_is_not_a_reason_to_use_the_cloud_route() {
        let route = race(
            async { Err(refusal()) },
            async { true },
            std::future::pending(),
        );
        assert_eq!(
            error(decided(route, async {}).await),
            (false, true, "not paired".to_owned())
        );
    }

    #[test]
    fn iroh_gets_the_promise_less_the_start_reserve() {
        assert_eq!(IROH_WINDOW, Duration::from_millis(2_950));
        assert_eq!(
            no_route("using the cloud route"),
            "no iroh route to the hub within 3s; using the cloud route"
        );
    }
}
