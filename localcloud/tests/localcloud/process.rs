//! The binary as the web spoke's tests and a person run it: the ready lines on stdout, a clean
//! stop on SIGTERM that drops the database.

use std::{process::Stdio, time::Duration};

use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::Command,
};

use crate::support::{WAIT, http};

#[tokio::test]
async fn prints_the_ready_lines_and_stops_cleanly_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_helix-local-cloud"))
        .args(["--port", "0", "--user", "carol@example.com:carol-password"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .expect("ready in time")
            .unwrap()
            .expect("the binary exited before ready");
        if line == "ready" {
            break;
        }
        printed.push(line);
    }
    let keys: Vec<&str> = printed
        .iter()
        .map(|l| l.split('=').next().unwrap())
        .collect();
    assert_eq!(
        keys,
        [
            "HELIX_SUPABASE_URL",
            "HELIX_SUPABASE_ANON_KEY",
            "HELIX_TEST_EMAIL",
            "HELIX_TEST_PASSWORD",
            "HELIX_DATABASE_URL"
        ]
    );
    let value = |i: usize| printed[i].split_once('=').unwrap().1.to_owned();
    let url = value(0);
    assert!(
        url.starts_with("http://127.0.0.1:") && !url.ends_with(":54321"),
        "{url}"
    );
    assert_eq!(value(2), "carol@example.com");
    assert_eq!(value(3), "carol-password");
    let signed = http()
        .post(format!("{url}/auth/v1/token?grant_type=password"))
        .header("apikey", value(1))
        .json(&serde_json::json!({"email": value(2), "password": value(3)}))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status().as_u16(), 200);

    let pid = child.id().unwrap().to_string();
    let databases = || async {
        let out = Command::new("psql")
            .args([
                "-X",
                "-At",
                "-d",
                "postgres://postgres@127.0.0.1:5432/postgres",
                "-c",
            ])
            .arg(format!(
                "select count(*) from pg_database where datname like 'helix_localcloud_{pid}_%'"
            ))
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    if std::env::var_os("DATABASE_URL").is_none() {
        assert_eq!(databases().await, "1");
    }
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(WAIT, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(exit.code(), Some(0));
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "nothing after ready on stdout"
    );
    if std::env::var_os("DATABASE_URL").is_none() {
        assert_eq!(databases().await, "0", "the database is dropped");
    }
}
