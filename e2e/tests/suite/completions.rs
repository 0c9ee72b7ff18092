//! `helix completions SHELL` and `helix-hub completions SHELL`: a script for each shell that
//! knows the subcommands and their flags, printed on a fresh machine (no config dir, data dir
//! or key is made), and a closed pipe is not an error. (clap_complete lists hidden subcommands
//! too, so `helix keeper`, which helix starts itself, is in the scripts.)

use tokio::process::Command;

use crate::support::bins::{bin, run_helix};

/// `binary completions shell` with HOME and XDG dirs in `home`; (exit code, stdout, stderr).
async fn completions(binary: &str, shell: &str, home: &std::path::Path) -> (i32, String, String) {
    let mut cmd = Command::new(bin(binary));
    cmd.args(["completions", shell])
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_DATA_HOME", home.join(".local/share"));
    let done = run_helix(cmd, None).await;
    (done.code.unwrap_or(-1), done.stdout, done.stderr)
}

#[tokio::test]
async fn both_binaries_print_a_script_for_each_shell_that_knows_their_commands() {
    let home = tempfile::tempdir().unwrap();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let (code, script, stderr) = completions("helix", shell, home.path()).await;
        assert_eq!(code, 0, "{shell}: {stderr}");
        for word in [
            "run",
            "attach",
            "pair",
            "hubs",
            "ticket-file",
            "connect-timeout",
        ] {
            assert!(script.contains(word), "helix {shell}: no {word}");
        }
        let (code, script, stderr) = completions("helix-hub", shell, home.path()).await;
        assert_eq!(code, 0, "{shell}: {stderr}");
        for word in ["serve", "login", "pair", "devices", "data-dir"] {
            assert!(script.contains(word), "helix-hub {shell}: no {word}");
        }
    }
    // Nothing was made for them: no config dir, data dir or key.
    assert_eq!(std::fs::read_dir(home.path()).unwrap().count(), 0);

    // The bash scripts parse, and define their completion functions once sourced.
    for binary in ["helix", "helix-hub"] {
        let (_, script, _) = completions(binary, "bash", home.path()).await;
        let file = home.path().join(format!("{binary}.bash"));
        std::fs::write(&file, &script).unwrap();
        let status = Command::new("bash")
            .arg("-c")
            .arg(format!("source {} && complete -p {binary}", file.display()))
            .output()
            .await
            .unwrap();
        assert!(
            status.status.success(),
            "{binary}: {}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
}

#[tokio::test]
async fn an_unknown_shell_is_a_usage_error_and_a_closed_pipe_is_not_an_error() {
    let home = tempfile::tempdir().unwrap();
    let (code, _, stderr) = completions("helix", "tcsh", home.path()).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("possible values: bash"), "{stderr}");

    for binary in ["helix", "helix-hub"] {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "{} completions zsh | head -c 10 >/dev/null; echo ${{PIPESTATUS[0]}}",
                bin(binary).display()
            ))
            .env("HOME", home.path())
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "0",
            "{binary}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{binary}: {stderr}");
    }
}
