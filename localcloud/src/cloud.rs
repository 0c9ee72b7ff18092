//! A running local cloud: [`LocalCloud::start`] sets it up in named steps (listener, database,
//! change capture, users, postrust, change feed, HTTP) and [`LocalCloud::shutdown`] takes it
//! down in stages (stop accepting and close sockets → stop the feed → stop postrust → drop the
//! database).

use std::{fmt, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use helix_testkit::{pg, pg::TestDb, postrust, postrust::PostRust};
use tokio::{net::TcpListener, sync::mpsc, task::JoinHandle};
use tokio_postgres::NoTls;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{debug, info, warn};

use crate::{
    app::{Shared, router},
    auth::{AuthState, Email},
    jwt::{Secret, hex32},
    realtime::{Realtime, Registry, listen},
    rest::RestProxy,
};

/// The port Supabase's local stack uses for its API.
pub const DEFAULT_PORT: u16 = 54321;
/// GoTrue's default access-token lifetime.
pub const DEFAULT_JWT_EXPIRY: Duration = Duration::from_secs(3600);
/// The default user when none is given.
pub const DEFAULT_EMAIL: &str = "alice@example.com";
/// Emailed codes not yet printed: a person signs in a few times a minute.
pub const MAIL_CAPACITY: usize = 64;
/// How long open sockets get to close at shutdown.
pub const SOCKETS_GRACE: Duration = Duration::from_secs(2);
/// How long in-flight HTTP requests get to finish at shutdown.
pub const HTTP_GRACE: Duration = Duration::from_secs(5);
/// The prefix of the throwaway database's name (`<prefix>_<pid>_<n>`).
pub const DB_PREFIX: &str = "helix_localcloud";
/// The change capture of the Realtime stand-in.
const REALTIME_SQL: &str = include_str!("../sql/realtime.sql");

/// A user to create: `--user EMAIL:PASSWORD`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub email: String,
    pub password: String,
}

impl fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserSpec")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl std::str::FromStr for UserSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (email, password) = s.split_once(':').ok_or("a user is EMAIL:PASSWORD")?;
        if !email.contains('@') {
            return Err(format!("{email:?} is not an email address"));
        }
        if password.chars().count() < crate::auth::state::MIN_PASSWORD_LEN {
            return Err(format!(
                "the password of {email} is shorter than {} characters",
                crate::auth::state::MIN_PASSWORD_LEN
            ));
        }
        Ok(Self {
            email: email.to_owned(),
            password: password.to_owned(),
        })
    }
}

/// How to start.
#[derive(Debug, Clone)]
pub struct Options {
    pub listen: SocketAddr,
    /// The web app's build; `None` serves none.
    pub web_dir: Option<PathBuf>,
    /// The users; empty means one, [`DEFAULT_EMAIL`] with a random password.
    pub users: Vec<UserSpec>,
    pub jwt_expiry: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)),
            web_dir: None,
            users: Vec::new(),
            jwt_expiry: DEFAULT_JWT_EXPIRY,
        }
    }
}

/// Why the local cloud could not start (or stopped running).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloudError {
    #[error(
        "postrust-server is not installed: install it with `{}` (or set HELIX_TEST_POSTRUST to its path)",
        postrust::INSTALL_HINT
    )]
    PostrustMissing,
    #[error(
        "PostgreSQL is not reachable at {0} (psql could not connect): start it, or set DATABASE_URL to a server where that user may create databases"
    )]
    PostgresUnreachable(String),
    // The messages carry their cause (no `#[source]`): `{:#}` would print it twice.
    #[error(
        "listening on {addr}: {error} (is another local cloud running? --port 0 picks a free port)"
    )]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("setting up the throwaway database: {0}")]
    Database(String),
    #[error("the change capture (localcloud/sql/realtime.sql): {0}")]
    Capture(tokio_postgres::Error),
    #[error("creating user {email}: {why}")]
    User { email: String, why: String },
    #[error("starting postrust: {0}")]
    Postrust(String),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error("setting up the REST proxy: {0}")]
    Proxy(reqwest::Error),
    #[error("the HTTP server stopped: {0}")]
    Http(String),
}

/// A running local cloud.
pub struct LocalCloud {
    addr: SocketAddr,
    users: Vec<UserSpec>,
    shared: Arc<Shared>,
    http_stop: CancellationToken,
    http: Option<JoinHandle<std::io::Result<()>>>,
    feed_stop: CancellationToken,
    feed: Option<listen::Feed>,
    db_task: JoinHandle<()>,
    mail: Option<mpsc::Receiver<Email>>,
    postrust: Option<PostRust>,
    db: Option<TestDb>,
}

impl fmt::Debug for LocalCloud {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalCloud")
            .field("addr", &self.addr)
            .field("users", &self.users)
            .finish_non_exhaustive()
    }
}

impl LocalCloud {
    pub async fn start(options: Options) -> Result<Self, CloudError> {
        if !postrust::installed() {
            return Err(CloudError::PostrustMissing);
        }
        if !pg::server_reachable().await {
            return Err(CloudError::PostgresUnreachable(pg::admin_url_for_display()));
        }
        let listener =
            TcpListener::bind(options.listen)
                .await
                .map_err(|error| CloudError::Bind {
                    addr: options.listen,
                    error,
                })?;
        let addr = listener.local_addr().map_err(|error| CloudError::Bind {
            addr: options.listen,
            error,
        })?;
        let origin = format!("http://{addr}");

        info!("creating a throwaway database with the migrations");
        let db = TestDb::try_create(DB_PREFIX, false)
            .await
            .map_err(CloudError::Database)?;
        debug!(database = %db.name, "database ready");
        let (client, connection) = tokio_postgres::connect(&db.url(), NoTls)
            .await
            .map_err(|e| CloudError::Database(e.to_string()))?;
        let db_task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                debug!(error = %e, "the database connection ended");
            }
        });
        client
            .batch_execute(REALTIME_SQL)
            .await
            .map_err(CloudError::Capture)?;

        let secret = Secret::random();
        let auth = AuthState::new(
            secret.clone(),
            options.jwt_expiry,
            format!("{origin}/auth/v1"),
        );
        let users = if options.users.is_empty() {
            vec![UserSpec {
                email: DEFAULT_EMAIL.into(),
                password: hex32()[..24].to_owned(),
            }]
        } else {
            options.users.clone()
        };
        for user in &users {
            let id = uuid::Uuid::new_v4().to_string();
            client
                .execute(
                    "insert into auth.users (id, email) values ($1::text::uuid, $2::text)",
                    &[&id, &user.email],
                )
                .await
                .map_err(|e| CloudError::User {
                    email: user.email.clone(),
                    why: e.to_string(),
                })?;
            auth.add_user(&id, &user.email, Some(&user.password));
        }

        info!("starting postrust");
        let rest = PostRust::try_start(&db, secret.expose())
            .await
            .map_err(CloudError::Postrust)?;
        let proxy = RestProxy::new(rest.url.clone()).map_err(CloudError::Proxy)?;

        let tables = listen::published_tables(&client).await?;
        let realtime = Arc::new(Realtime {
            registry: Registry::new(tables),
            secret: secret.clone(),
            stop: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        let feed_stop = CancellationToken::new();
        let feed = listen::start(&db.url(), realtime.clone(), feed_stop.clone()).await?;

        let (mail_tx, mail) = mpsc::channel(MAIL_CAPACITY);
        let shared = Arc::new(Shared {
            auth,
            db: client,
            mail: mail_tx,
            anon_key: secret.anon_key(),
            secret,
            rest: proxy,
            realtime,
            web_dir: options.web_dir.clone(),
        });
        let http_stop = CancellationToken::new();
        let app = router(shared.clone());
        let stop = http_stop.clone();
        let http = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await
        });
        info!(%origin, "local cloud ready");
        Ok(Self {
            addr,
            users,
            shared,
            http_stop,
            http: Some(http),
            feed_stop,
            feed: Some(feed),
            db_task,
            mail: Some(mail),
            postrust: Some(rest),
            db: Some(db),
        })
    }

    /// Where it listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The project URL (`HELIX_SUPABASE_URL`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The anon key (`HELIX_SUPABASE_ANON_KEY`).
    pub fn anon_key(&self) -> &str {
        &self.shared.anon_key
    }

    /// The users it was started with, in order.
    pub fn users(&self) -> &[UserSpec] {
        &self.users
    }

    /// The throwaway database's name.
    pub fn database(&self) -> Option<&str> {
        self.db.as_ref().map(|d| d.name.as_str())
    }

    /// The throwaway database's URL as its owner, without a password (psql takes one from
    /// `PGPASSWORD` or `~/.pgpass`): for looking at the rows, or playing a hostile cloud.
    pub fn database_url(&self) -> Option<String> {
        self.db.as_ref().map(|d| pg::without_password(&d.url()))
    }

    /// Open Realtime sockets.
    pub fn realtime_sockets(&self) -> usize {
        self.shared.realtime.registry.sockets()
    }

    /// The emailed codes (once; the binary prints them, a test reads them).
    pub fn take_mail(&mut self) -> Option<mpsc::Receiver<Email>> {
        self.mail.take()
    }

    /// Resolves if the HTTP server or the change feed stops on its own: the local cloud is
    /// then broken and should be shut down.
    pub async fn failed(&mut self) -> CloudError {
        let (http_slot, feed_slot) = (&mut self.http, &mut self.feed);
        let http = async move {
            let ended = match http_slot.as_mut() {
                Some(task) => task.await,
                None => std::future::pending().await,
            };
            *http_slot = None;
            ended
        };
        let feed = async move {
            let ended = match feed_slot.as_mut() {
                Some(feed) => (&mut feed.task).await,
                None => std::future::pending().await,
            };
            *feed_slot = None;
            ended
        };
        tokio::select! {
            ended = http => CloudError::Http(match ended {
                Ok(Ok(())) => "it ended".into(),
                Ok(Err(e)) => e.to_string(),
                Err(e) => e.to_string(),
            }),
            ended = feed => match ended {
                Ok(Err(e)) => CloudError::Listen(e),
                _ => CloudError::Listen(listen::ListenError::Closed),
            },
        }
    }

    /// Stops everything and drops the database.
    pub async fn shutdown(mut self) {
        info!("shutting down");
        self.http_stop.cancel();
        let realtime = self.shared.realtime.clone();
        realtime.stop.cancel();
        realtime.tracker.close();
        if tokio::time::timeout(SOCKETS_GRACE, realtime.tracker.wait())
            .await
            .is_err()
        {
            warn!("Realtime sockets did not close within {SOCKETS_GRACE:?}");
        }
        if let Some(mut http) = self.http.take()
            && tokio::time::timeout(HTTP_GRACE, &mut http).await.is_err()
        {
            warn!("HTTP requests still running after {HTTP_GRACE:?}; cutting them off");
            http.abort();
        }
        self.feed_stop.cancel();
        if let Some(feed) = self.feed.take() {
            let _ = tokio::time::timeout(HTTP_GRACE, feed.task).await;
        }
        if let Some(rest) = self.postrust.take() {
            rest.stop().await;
        }
        self.db_task.abort();
        if let Some(db) = self.db.take() {
            let name = db.name.clone();
            // Dropping runs psql (`drop database … with (force)`): blocking.
            let _ = tokio::task::spawn_blocking(move || drop(db)).await;
            info!(database = %name, "database dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_parse_and_hide_their_password() {
        let u: UserSpec = "bob@example.com:pass:word".parse().unwrap();
        assert_eq!(
            (u.email.as_str(), u.password.as_str()),
            ("bob@example.com", "pass:word")
        );
        assert!(!format!("{u:?}").contains("pass:word"));
        assert!("bob@example.com".parse::<UserSpec>().is_err());
        assert!("bob:longpassword".parse::<UserSpec>().is_err());
        assert!("bob@example.com:short".parse::<UserSpec>().is_err());
    }
}
