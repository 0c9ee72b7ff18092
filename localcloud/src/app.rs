//! The one origin: what every route shares, and the router that puts `/auth/v1`, `/rest/v1`,
//! `/realtime/v1/websocket` and the web app side by side behind the gateway middleware.

use std::{path::PathBuf, sync::Arc};

use axum::{Router, middleware, routing::any, routing::get};
use tokio::sync::mpsc;

use crate::{
    auth::{self, AuthState, Email},
    gateway,
    jwt::Secret,
    realtime::{self, Realtime},
    rest::{self, RestProxy},
    web,
};

/// What the routes share.
pub struct Shared {
    pub auth: AuthState,
    /// The database as its owner: `auth.users` rows.
    pub db: tokio_postgres::Client,
    /// Emailed codes, for the binary to print (or a test to read).
    pub mail: mpsc::Sender<Email>,
    pub secret: Secret,
    pub anon_key: String,
    pub rest: RestProxy,
    pub realtime: Arc<Realtime>,
    /// The web app's build, if there is one.
    pub web_dir: Option<PathBuf>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("rest", &self.rest)
            .field("web_dir", &self.web_dir)
            .finish_non_exhaustive()
    }
}

/// The whole HTTP surface.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .nest("/auth/v1", auth::routes::router())
        .route("/rest/v1", any(rest::proxy))
        .route("/rest/v1/{*path}", any(rest::proxy))
        .route("/realtime/v1/websocket", get(realtime::upgrade::websocket))
        .fallback(web::serve)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            gateway::gate,
        ))
        .with_state(shared)
}
