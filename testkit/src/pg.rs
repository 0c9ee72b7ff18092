//! Real PostgreSQL for the SQL tests and the bench: one fresh database per use (created through
//! `DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`), the Supabase-like
//! bootstrap and every migration applied with `psql`, and requests run the way PostgREST runs
//! them (one transaction as `authenticator`, a transaction-local role and JWT claims).

use std::{
    path::{Path, PathBuf},
    process::Output,
    sync::atomic::{AtomicU32, Ordering},
};

use tokio::process::Command;

/// Alice and Bob, two Supabase users.
pub const ALICE: &str = "11111111-1111-1111-1111-111111111111";
pub const BOB: &str = "22222222-2222-2222-2222-222222222222";

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// Creates the cluster-wide roles once per test process (concurrent role grants race).
static ROLES: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();

/// The cluster the tests create their databases in.
fn admin_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// `admin_url` with another database name.
fn url_for(db: &str) -> String {
    let admin = admin_url();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("DATABASE_URL ends with /<database>");
    let base = base.split('?').next().unwrap_or(base);
    format!("{base}/{db}")
}

/// The workspace root (this crate is `testkit/` in it), which holds `migrations/`.
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of `testkit/sql/`: the Supabase-like roles and bootstrap applied before the
/// migrations.
fn sql_file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("sql")
        .join(name)
}

/// Whether the PostgreSQL server behind `DATABASE_URL` answers (without panicking).
pub async fn server_reachable() -> bool {
    Command::new("psql")
        .args(["-X", "-q", "-d", &admin_url(), "-c", "select 1"])
        .output()
        .await
        .is_ok_and(|out| out.status.success())
}

/// A throwaway database with the bootstrap and migrations applied; dropped at the end.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> Self {
        ROLES
            .get_or_init(|| async {
                apply_file(&admin_url(), &sql_file("supabase_roles.sql")).await;
            })
            .await;
        let name = format!(
            "helix_test_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        psql_ok(&admin_url(), &format!("create database {name}")).await;
        let db = TestDb { name };
        db.apply(&sql_file("supabase_bootstrap.sql")).await;
        let mut migrations: Vec<PathBuf> = std::fs::read_dir(repo().join("migrations"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        migrations.sort();
        assert!(!migrations.is_empty());
        for m in migrations {
            db.apply(&m).await;
        }
        for (id, email) in [(ALICE, "alice@example.com"), (BOB, "bob@example.com")] {
            db.admin(&format!(
                "insert into auth.users (id, email) values ('{id}', '{email}')"
            ))
            .await;
        }
        db
    }

    async fn apply(&self, file: &Path) {
        apply_file(&url_for(&self.name), file).await;
    }

    /// The database's URL as `authenticator` (how PostgREST connects).
    pub fn authenticator_url(&self) -> String {
        url_for(&self.name).replacen("postgres@", "authenticator@", 1)
    }

    /// SQL as the database owner.
    pub async fn admin(&self, sql: &str) -> String {
        psql_ok(&url_for(&self.name), sql).await
    }

    /// One "HTTP request" as PostgREST makes it, for `user` (a uuid) or anonymously (`None`).
    pub async fn as_user(&self, user: Option<&str>, sql: &str) -> Result<String, String> {
        let (role, claims) = match user {
            Some(id) => (
                "authenticated",
                format!(r#"{{"sub":"{id}","role":"authenticated","aud":"authenticated"}}"#),
            ),
            None => ("anon", r#"{"role":"anon"}"#.to_owned()),
        };
        self.as_role(role, &claims, sql).await
    }

    /// One request with the project's service key (role `service_role`, no user).
    pub async fn as_service(&self, sql: &str) -> Result<String, String> {
        self.as_role("service_role", r#"{"role":"service_role"}"#, sql)
            .await
    }

    async fn as_role(&self, role: &str, claims: &str, sql: &str) -> Result<String, String> {
        let script = format!(
            "begin;\nselect set_config('role', '{role}', true), set_config('request.jwt.claims', '{claims}', true) \\g /dev/null\n{sql};\ncommit;\n"
        );
        let url = url_for(&self.name).replacen("postgres@", "authenticator@", 1);
        let out = run_psql(&url, &script).await;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args(["-X", "-q", "-d", &admin_url(), "-c"])
            .arg(format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .output();
    }
}

/// Runs the SQL file `file` against `url`, stopping at the first error.
async fn apply_file(url: &str, file: &Path) {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f"])
        .arg(file)
        .output()
        .await
        .expect("psql must be installed");
    assert!(
        out.status.success(),
        "applying {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn run_psql(url: &str, script: &str) -> Output {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-At",
            "-v",
            "ON_ERROR_STOP=1",
            "-v",
            "VERBOSITY=verbose",
            "-d",
            url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("psql must be installed");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(script.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

async fn psql_ok(url: &str, sql: &str) -> String {
    let out = run_psql(url, &format!("{sql};\n")).await;
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
