//! `helix-hub service install|uninstall|status`: writes or removes the service file
//! ([`helix_hub::desktop_service`]) and asks systemd or launchd to enable, start or stop it.
//! Where the manager cannot be reached (no user session bus, no launchctl), the file is still
//! written and the command prints what to run.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use helix_hub::{
    cli::ServiceAction,
    desktop_service::{LAUNCHD_LABEL, Manager, SYSTEMD_UNIT, service_path, service_text},
};

use crate::terminal::{out, say};

pub(crate) fn service(data_dir: &Path, action: ServiceAction) -> anyhow::Result<()> {
    let Some(manager) = Manager::of_this_platform() else {
        bail!(
            "helix-hub service supports Linux (systemd) and macOS (launchd); run `helix-hub serve` from your system's own service manager"
        );
    };
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set: the service file goes in your home directory")?;
    let config_home = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home.join(".config"));
    let path = service_path(manager, &config_home, &home);
    match action {
        ServiceAction::Install { dry_run } => install(manager, data_dir, &path, dry_run),
        ServiceAction::Uninstall => uninstall(manager, &path),
        ServiceAction::Status => status(manager, data_dir, &path),
    }
}

fn install(manager: Manager, data_dir: &Path, path: &Path, dry_run: bool) -> anyhow::Result<()> {
    let exe = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("finding this helix-hub binary's path")?;
    let data_dir = std::path::absolute(data_dir)
        .with_context(|| format!("making {} absolute", data_dir.display()))?;
    let text = service_text(manager, &exe, &data_dir);
    if dry_run {
        say(&format!("would write {}:", path.display()));
        out(text.trim_end());
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, &text).with_context(|| format!("writing {}", path.display()))?;
    say(&format!("wrote {}", path.display()));
    let user = std::env::var("USER").unwrap_or_else(|_| "$USER".into());
    match manager {
        Manager::Systemd => {
            let started = run("systemctl", &["--user", "daemon-reload"])
                .and_then(|()| run("systemctl", &["--user", "enable", "--now", SYSTEMD_UNIT]));
            match started {
                Ok(()) => say(&format!("enabled and started {SYSTEMD_UNIT}")),
                Err(why) => say(&format!(
                    "could not reach systemd ({why}); start it in your login session with: systemctl --user daemon-reload && systemctl --user enable --now {SYSTEMD_UNIT}"
                )),
            }
            say(&format!(
                "to keep it running while you are logged out: loginctl enable-linger {user}"
            ));
        }
        Manager::Launchd => {
            let domain = format!("gui/{}", current_uid());
            match run(
                "launchctl",
                &["bootstrap", &domain, &path.to_string_lossy()],
            ) {
                Ok(()) => say(&format!("loaded {LAUNCHD_LABEL}; it starts at every login")),
                Err(why) => say(&format!(
                    "could not load it ({why}); run: launchctl bootstrap {domain} {}",
                    path.display()
                )),
            }
        }
    }
    Ok(())
}

fn uninstall(manager: Manager, path: &Path) -> anyhow::Result<()> {
    if !path.exists() {
        say(&format!(
            "not installed ({} does not exist)",
            path.display()
        ));
        return Ok(());
    }
    let stopped = match manager {
        Manager::Systemd => run("systemctl", &["--user", "disable", "--now", SYSTEMD_UNIT]),
        Manager::Launchd => run(
            "launchctl",
            &["bootout", &format!("gui/{}/{LAUNCHD_LABEL}", current_uid())],
        ),
    };
    if let Err(why) = stopped {
        say(&format!(
            "could not stop it through the service manager ({why}); removing the file anyway"
        ));
    }
    std::fs::remove_file(path).with_context(|| format!("removing {}", path.display()))?;
    if manager == Manager::Systemd {
        let _ = run("systemctl", &["--user", "daemon-reload"]);
    }
    say(&format!("removed {}", path.display()));
    Ok(())
}

fn status(manager: Manager, data_dir: &Path, path: &Path) -> anyhow::Result<()> {
    let installed = path.exists();
    out(&format!(
        "installed: {}",
        if installed {
            format!("yes ({})", path.display())
        } else {
            format!(
                "no (install with `helix-hub service install`; it would go in {})",
                path.display()
            )
        }
    ));
    if installed && manager == Manager::Systemd {
        for (what, verb) in [("enabled", "is-enabled"), ("running", "is-active")] {
            let answer = query("systemctl", &["--user", verb, SYSTEMD_UNIT]);
            out(&format!("{what}: {answer}"));
        }
    }
    if installed && manager == Manager::Launchd {
        let answer = match run(
            "launchctl",
            &["print", &format!("gui/{}/{LAUNCHD_LABEL}", current_uid())],
        ) {
            Ok(()) => "loaded".to_owned(),
            Err(why) => format!("not loaded ({why})"),
        };
        out(&format!("launchd: {answer}"));
    }
    let hub = if helix_discovery::local::is_running(data_dir) {
        "running"
    } else {
        "not running"
    };
    out(&format!("hub on {}: {hub}", data_dir.display()));
    Ok(())
}

/// Runs a service manager's command; why it did not succeed otherwise.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    let first = stderr.lines().next().unwrap_or("").trim();
    Err(format!("`{program} {}` failed: {first}", args.join(" ")))
}

/// The one-word answer of `systemctl --user is-enabled|is-active`, or why there is none.
fn query(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) => {
            let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
            if answer.is_empty() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                format!(
                    "unknown ({})",
                    stderr.lines().next().unwrap_or("no answer").trim()
                )
            } else {
                answer
            }
        }
        Err(e) => format!("unknown ({program}: {e})"),
    }
}

fn current_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::getuid()
    }
}
