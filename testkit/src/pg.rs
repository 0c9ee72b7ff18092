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
    // DATABASE_URL ends with /<database>.
    let base = admin
        .rsplit_once('/')
        .map_or(admin.as_str(), |(base, _)| base);
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

/// `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`) without its password,
/// for messages.
pub fn admin_url_for_display() -> String {
    redact(&admin_url())
}

/// `url` with the password of its user info replaced by `***`.
fn redact(url: &str) -> String {
    replace_password(url, Some("***"))
}

/// `url` without the password of its user info (psql then takes one from `PGPASSWORD` or
/// `~/.pgpass`): a URL that can be shown and still used.
pub fn without_password(url: &str) -> String {
    replace_password(url, None)
}

fn replace_password(url: &str, with: Option<&str>) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) if user_info.contains(':') => {
            let user = user_info.split(':').next().unwrap_or_default();
            match with {
                Some(mask) => format!("{scheme}://{user}:{mask}@{host}{path}"),
                None => format!("{scheme}://{user}@{host}{path}"),
            }
        }
        _ => url.to_owned(),
    }
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
        Self::try_create("helix_test", true)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`create`](Self::create) without panicking: a database named `<prefix>_<pid>_<n>`, with
    /// Alice and Bob in `auth.users` when `fixed_users` (the local cloud adds its own users).
    /// The error says what failed (a message for a person, without the URL's password).
    pub async fn try_create(prefix: &str, fixed_users: bool) -> Result<Self, String> {
        if !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(format!(
                "database name prefix {prefix:?}: only a-z, 0-9 and _"
            ));
        }
        ROLES
            .get_or_try_init(|| async {
                try_apply_file(&admin_url(), &sql_file("supabase_roles.sql")).await
            })
            .await?;
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        try_psql(&admin_url(), &format!("create database {name}")).await?;
        // From here on the database exists: dropping `db` removes it on any error.
        let db = TestDb { name };
        try_apply_file(&db.url(), &sql_file("supabase_bootstrap.sql")).await?;
        let entries = std::fs::read_dir(repo().join("migrations"))
            .map_err(|e| format!("reading {}: {e}", repo().join("migrations").display()))?;
        let mut migrations: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        migrations.sort();
        if migrations.is_empty() {
            return Err(format!(
                "no migrations in {}",
                repo().join("migrations").display()
            ));
        }
        for m in migrations {
            try_apply_file(&db.url(), &m).await?;
        }
        if fixed_users {
            for (id, email) in [(ALICE, "alice@example.com"), (BOB, "bob@example.com")] {
                try_psql(
                    &db.url(),
                    &format!("insert into auth.users (id, email) values ('{id}', '{email}')"),
                )
                .await?;
            }
        }
        Ok(db)
    }

    /// The database's URL as its owner (`DATABASE_URL`'s user).
    pub fn url(&self) -> String {
        url_for(&self.name)
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
async fn try_apply_file(url: &str, file: &Path) -> Result<(), String> {
    let out = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f"])
        .arg(file)
        .output()
        .await
        .map_err(|e| format!("psql must be installed (running it: {e})"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "applying {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn run_psql(url: &str, script: &str) -> Output {
    try_run_psql(url, script)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

async fn try_run_psql(url: &str, script: &str) -> Result<Output, String> {
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
        .map_err(|e| format!("psql must be installed (running it: {e})"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("writing to psql: {e}"))?;
    }
    child
        .wait_with_output()
        .await
        .map_err(|e| format!("waiting for psql: {e}"))
}

async fn psql_ok(url: &str, sql: &str) -> String {
    try_psql(url, sql).await.unwrap_or_else(|e| panic!("{e}"))
}

/// One statement through psql; its output, or its error text.
async fn try_psql(url: &str, sql: &str) -> Result<String, String> {
    let out = try_run_psql(url, &format!("{sql};\n")).await?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn urls_for_messages_hide_the_password() {
        assert_eq!(
            super::redact("postgres://u:secret@db:5432/postgres"),
            "postgres://u:***@db:5432/postgres"
        );
        assert_eq!(
            super::redact("postgres://postgres@127.0.0.1:5432/postgres"),
            "postgres://postgres@127.0.0.1:5432/postgres"
        );
        assert_eq!(
            super::without_password("postgres://postgres:s3cret@db:5432/x"),
            "postgres://postgres@db:5432/x"
        );
        assert_eq!(
            super::without_password("postgres://postgres@127.0.0.1:5432/x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
    }
}
