//! `helix-hub service install|status|uninstall` against a throwaway HOME: the systemd user
//! unit it writes (checked by `systemd-analyze verify` where that exists), and what it says
//! when no user session bus answers, as in a container. (The LaunchAgent's contents are
//! checked by the unit tests in `hub/src/desktop_service.rs`.)

use std::path::Path;

use tokio::process::Command;

use crate::support::bins::{bin, run_helix};

/// `helix-hub --data-dir DATA service ARGS` with HOME and XDG_CONFIG_HOME under `home`.
async fn service(home: &Path, data: &str, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(bin("helix-hub"));
    cmd.current_dir(home)
        .args(["--data-dir", data, "service"])
        .args(args)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join("cfg"));
    let done = run_helix(cmd, None).await;
    (done.code.unwrap_or(-1), done.stdout, done.stderr)
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn install_writes_a_valid_user_unit_status_reports_it_and_uninstall_removes_it() {
    let home = tempfile::tempdir().unwrap();
    let home = home.path().canonicalize().unwrap();
    let unit = home.join("cfg/systemd/user/helix-hub.service");
    let exe = bin("helix-hub").canonicalize().unwrap();

    // A relative data dir is made absolute; --dry-run writes nothing.
    let (code, text, stderr) = service(&home, "hub-data", &["install", "--dry-run"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("would write {}", unit.display())),
        "{stderr}"
    );
    assert!(
        text.contains(&format!(
            "ExecStart=\"{}\" --data-dir \"{}\" serve\n",
            exe.display(),
            home.join("hub-data").display()
        )),
        "{text}"
    );
    for line in [
        "Restart=on-failure",
        "After=network-online.target",
        "WantedBy=default.target",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(!unit.exists());

    if let Ok(verify) = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .await
        && verify.status.success()
    {
        let file = home.join("helix-hub.service");
        std::fs::write(&file, &text).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&file)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(
            !stderr.contains("helix-hub.service"),
            "systemd-analyze found a problem: {stderr}"
        );
    }

    let (code, _, stderr) = service(&home, "hub-data", &["install"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&unit).unwrap().trim_end(),
        text.trim_end()
    );
    assert!(
        stderr.contains("enabled and started helix-hub.service")
            || stderr.contains("start it in your login session with: systemctl --user daemon-reload && systemctl --user enable --now helix-hub.service"),
        "{stderr}"
    );
    assert!(stderr.contains("loginctl enable-linger"), "{stderr}");

    let (code, status, stderr) = service(&home, "hub-data", &["status"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        status.contains(&format!("installed: yes ({})", unit.display())),
        "{status}"
    );
    assert!(
        status.contains("enabled: ") && status.contains("running: "),
        "{status}"
    );
    assert!(
        status.contains("not running"),
        "no hub runs on the data dir: {status}"
    );

    let (code, _, stderr) = service(&home, "hub-data", &["uninstall"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(&format!("removed {}", unit.display())),
        "{stderr}"
    );
    assert!(!unit.exists());
    let (_, status, _) = service(&home, "hub-data", &["status"]).await;
    assert!(status.contains("installed: no"), "{status}");
    let (code, _, stderr) = service(&home, "hub-data", &["uninstall"]).await;
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("not installed"), "{stderr}");
}
