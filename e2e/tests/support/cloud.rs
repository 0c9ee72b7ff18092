//! A local cloud for the Supabase tests, and a hub data dir signed in to it.

use helix_discovery::{
    auth::{Auth, SessionStore},
    rest::{Rest, SupabaseConfig},
};
use serde_json::json;
use tempfile::TempDir;

use super::{
    mock_gotrue::{EMAIL, MockGoTrue, PASSWORD},
    pg::TestDb,
    postrust::PostRust,
};

/// A local cloud: the GoTrue stand-in, a migrated database and the REST server.
pub struct TestCloud {
    pub gotrue: MockGoTrue,
    pub db: TestDb,
    pub server: PostRust,
    pub config: SupabaseConfig,
}

impl TestCloud {
    pub async fn start() -> Self {
        let gotrue = MockGoTrue::start().await;
        let db = TestDb::create().await;
        let server = PostRust::start(&db).await;
        let config = SupabaseConfig {
            url: gotrue.url(),
            anon_key: "anon-key".into(),
            rest_url: Some(server.url.clone()),
        };
        Self {
            gotrue,
            db,
            server,
            config,
        }
    }

    /// A hub data dir signed in to this cloud, with the test API key.
    pub async fn hub_dir(&self) -> TempDir {
        self.hub_dir_via(self.config.rest_url.as_deref().unwrap())
            .await
    }

    /// [`TestCloud::hub_dir`] whose hub reaches the REST server through `rest_url` (a proxy).
    pub async fn hub_dir_via(&self, rest_url: &str) -> TempDir {
        let dir = self.signed_in_dir(rest_url).await;
        crate::support::store_api_key(dir.path());
        dir
    }

    /// A fresh data dir with this cloud's settings (REST through `rest_url`) and a session of
    /// the test user: what `cloud login` leaves, for a hub or a device.
    pub async fn signed_in_dir(&self, rest_url: &str) -> TempDir {
        self.signed_in_dir_at(&self.config.url, rest_url).await
    }

    /// [`TestCloud::signed_in_dir`] whose owner reaches Auth at `url` (e.g. through a
    /// forward into a network lab); the session is made here, through the loopback.
    pub async fn signed_in_dir_at(&self, url: &str, rest_url: &str) -> TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("cloud.json"),
            json!({"url": url, "anon_key": self.config.anon_key, "rest_url": rest_url}).to_string(),
        )
        .unwrap();
        let session = Auth::new(&self.config)
            .unwrap()
            .sign_in_password(EMAIL, PASSWORD)
            .await
            .unwrap();
        SessionStore::new(dir.path().join("cloud-session.json"))
            .save(&session)
            .unwrap();
        dir
    }

    pub async fn rest(&self) -> Rest {
        let session = Auth::new(&self.config)
            .unwrap()
            .sign_in_password(EMAIL, PASSWORD)
            .await
            .unwrap();
        Rest::new(&self.config, session.access_token).unwrap()
    }
}
