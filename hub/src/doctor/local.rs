//! The checks that read only this machine: the data dir and its private files, free disk,
//! the journal, credentials, the Claude Code CLI, paired devices.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    time::Duration,
};

use helix_mesh::pb::Provider;
use rusqlite::{Connection, OpenFlags};

use super::Check;
use crate::{
    credentials::CredentialStore,
    devices::Devices,
    login::{self, Health},
};

/// Files that hold secrets or identities: each must be 0600 where it exists.
const PRIVATE_FILES: [&str; 7] = [
    "auth-profiles.json",
    "secret.key",
    "hub-token",
    "devices.json",
    "cloud.json",
    "cloud-session.json",
    "cloud-claim-token",
];

/// Below this the journal's next commits may fail (warn), and below the second they will.
const DISK_WARN_BYTES: u64 = 1 << 30;
const DISK_FAIL_BYTES: u64 = 64 << 20;

/// The journal's file, and the VFS the hub opens it with (its lock keeps others out).
const JOURNAL_FILE: &str = "journal.sqlite";
const JOURNAL_VFS: &str = "unix-excl";

/// How long `claude --version` may take.
const CLAUDE_VERSION_TIMEOUT: Duration = Duration::from_secs(10);

/// The data dir exists and only its owner can enter it, and each private file is 0600.
pub fn data_dir(dir: &Path) -> Vec<Check> {
    let shown = dir.display();
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return vec![Check::fail(
                "data dir",
                format!("{shown} does not exist"),
                "run `helix-hub serve` once (it creates the dir), or pass the right --data-dir",
            )];
        }
        Err(e) => {
            return vec![Check::fail(
                "data dir",
                format!("{shown}: {e}"),
                "check the path and its permissions",
            )];
        }
    };
    let mut checks = Vec::new();
    let mode = meta.permissions().mode() & 0o777;
    let me = effective_uid();
    if meta.uid() != me {
        checks.push(Check::fail(
            "data dir",
            format!(
                "{shown} belongs to uid {}, not to this user ({me})",
                meta.uid()
            ),
            "run the hub as the user that owns its data dir",
        ));
    } else if mode & 0o077 != 0 {
        checks.push(Check::warn(
            "data dir",
            format!("{shown} is {mode:03o}: other users can look inside"),
            format!("chmod 700 {shown}"),
        ));
    } else {
        checks.push(Check::ok("data dir", format!("{shown} ({mode:03o})")));
    }
    let loose: Vec<String> = PRIVATE_FILES
        .iter()
        .filter_map(|name| {
            let mode = std::fs::metadata(dir.join(name)).ok()?.permissions().mode() & 0o777;
            (mode & 0o077 != 0).then(|| format!("{name} ({mode:03o})"))
        })
        .collect();
    if loose.is_empty() {
        checks.push(Check::ok("file modes", "every private file is 0600"));
    } else {
        checks.push(Check::fail(
            "file modes",
            format!("readable by others: {}", loose.join(", ")),
            format!(
                "chmod 600 {}, and replace any secret another user may have read",
                loose
                    .iter()
                    .map(|l| dir
                        .join(l.split(' ').next().unwrap_or_default())
                        .display()
                        .to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    checks
}

/// Free space on the data dir's file system.
pub fn free_disk(dir: &Path) -> Check {
    let Some(free) = free_bytes(dir) else {
        return Check::warn(
            "free disk",
            format!("could not read the free space of {}", dir.display()),
            "check that the data dir exists",
        );
    };
    let shown = format!("{} free", human_bytes(free));
    if free < DISK_FAIL_BYTES {
        Check::fail(
            "free disk",
            shown,
            "free some space: with the disk full the journal cannot store output, and commands fail",
        )
    } else if free < DISK_WARN_BYTES {
        Check::warn(
            "free disk",
            shown,
            "free some space before the journal runs out of it",
        )
    } else {
        Check::ok("free disk", shown)
    }
}

#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

#[allow(unsafe_code)]
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` is writable for the call.
    let done = unsafe { libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) };
    if done != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

fn human_bytes(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let b = bytes as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

/// SQLite's `quick_check` of the journal. A running hub holds the journal's lock (nobody else
/// may open it), so then the check is left to a stopped hub.
pub fn journal(dir: &Path, hub_runs: bool) -> Check {
    let path = dir.join(JOURNAL_FILE);
    if !path.exists() {
        return Check::ok(
            "journal",
            "none yet (the first `helix-hub serve` creates it)",
        );
    }
    if hub_runs {
        return Check::ok(
            "journal",
            "held by the running hub; `quick_check` runs while the hub is stopped",
        );
    }
    let problem = match quick_check(&path) {
        Ok(lines) if lines.len() == 1 && lines[0] == "ok" => {
            return Check::ok("journal", format!("{}: quick_check ok", path.display()));
        }
        Ok(lines) => lines.into_iter().take(3).collect::<Vec<_>>().join("; "),
        Err(e) => e.to_string(),
    };
    Check::fail(
        "journal",
        format!("{} is damaged: {problem}", path.display()),
        format!(
            "with the hub stopped, move {} (and its -wal file) aside: the hub starts a new, empty journal (the old history stays in the moved file)",
            path.display()
        ),
    )
}

fn quick_check(path: &Path) -> rusqlite::Result<Vec<String>> {
    let conn = Connection::open_with_flags_and_vfs(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        JOURNAL_VFS,
    )?;
    let mut statement = conn.prepare("PRAGMA quick_check")?;
    let rows = statement.query_map([], |row| row.get::<_, String>(0))?;
    rows.collect()
}

/// Each stored credential's health; a hub with none can run nothing.
pub fn credentials(dir: &Path) -> Vec<Check> {
    let store = CredentialStore::in_dir(dir);
    let rows = match login::report(&store, None) {
        Ok(rows) => rows,
        Err(e) => {
            return vec![Check::fail(
                "credentials",
                e.to_string(),
                "fix or remove auth-profiles.json, then `helix-hub login …` again",
            )];
        }
    };
    let stored: Vec<_> = rows
        .iter()
        .filter(|r| r.health != Health::Missing)
        .collect();
    if stored.is_empty() {
        return vec![Check::fail(
            "credentials",
            "none stored: no provider can run a command",
            "store one: `printf %s \"$ANTHROPIC_API_KEY\" | helix-hub login anthropic --api-key` (or --setup-token, google-gemini, openai-codex)",
        )];
    }
    stored
        .into_iter()
        .map(|r| {
            let name = format!("credential {}", r.provider);
            let what = format!(
                "{}{}",
                r.kind.as_deref().unwrap_or("credential"),
                r.account
                    .as_deref()
                    .map(|a| format!(" for {a}"))
                    .unwrap_or_default()
            );
            let relogin = format!("helix-hub login {}", r.provider);
            match r.health {
                Health::Ok => Check::ok(name, what),
                Health::Expiring if r.refreshable => Check::ok(
                    name,
                    format!("{what}, expires within a day (it refreshes itself)"),
                ),
                Health::Expiring => Check::warn(
                    name,
                    format!("{what} expires within a day"),
                    format!("store a new one: {relogin}"),
                ),
                Health::Expired if r.refreshable => Check::warn(
                    name,
                    format!("{what} has expired; the hub refreshes it at its next use"),
                    format!("if that fails: {relogin}"),
                ),
                Health::Expired => Check::fail(
                    name,
                    format!("{what} has expired"),
                    format!("store a new one: {relogin}"),
                ),
                Health::Missing => Check::ok(name, "not stored"),
            }
        })
        .collect()
}

/// With a setup-token stored, the hub runs the Claude Code CLI: it must be found and answer.
pub async fn claude_code(dir: &Path, binary: &str) -> Vec<Check> {
    let store = CredentialStore::in_dir(dir);
    let uses_cli = matches!(
        store.credential_for(Provider::Anthropic),
        Ok(Some(c)) if c.kind() == "token"
    );
    if !uses_cli {
        return Vec::new();
    }
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let fix = format!(
        "install it (`npm install -g @anthropic-ai/claude-code`) or set providers.anthropic.claude_binary to its path (now {binary:?})"
    );
    match tokio::time::timeout(CLAUDE_VERSION_TIMEOUT, command.output()).await {
        Ok(Ok(out)) if out.status.success() => {
            let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            vec![Check::ok("claude code", format!("{binary}: {version}"))]
        }
        Ok(Ok(out)) => vec![Check::fail(
            "claude code",
            format!(
                "`{binary} --version` exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            fix,
        )],
        Ok(Err(e)) => vec![Check::fail(
            "claude code",
            format!("the setup-token runs the Claude Code CLI, and `{binary}` cannot run: {e}"),
            fix,
        )],
        Err(_) => vec![Check::fail(
            "claude code",
            format!(
                "`{binary} --version` did not answer within {}s",
                CLAUDE_VERSION_TIMEOUT.as_secs()
            ),
            fix,
        )],
    }
}

/// Paired devices (none is a warning: nothing can reach the hub but this machine).
pub fn devices(dir: &Path) -> Check {
    match Devices::load(dir) {
        Ok(devices) => match devices.list().len() {
            0 => Check::warn(
                "paired devices",
                "none: only this machine can run commands",
                "pair one: `helix-hub pair` (a phone or browser: `helix-hub pair --web`)",
            ),
            n => Check::ok("paired devices", format!("{n}")),
        },
        Err(e) => Check::fail(
            "paired devices",
            e.to_string(),
            "fix devices.json, or move it aside and pair the devices again",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::Status;

    #[test]
    fn loose_modes_are_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.path().join("secret.key"), "x").unwrap();
        std::fs::set_permissions(
            dir.path().join("secret.key"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let checks = data_dir(dir.path());
        assert_eq!(checks[0].status, Status::Warn, "{checks:?}");
        assert!(checks[0].next.starts_with("chmod 700"), "{checks:?}");
        assert_eq!(checks[1].status, Status::Fail, "{checks:?}");
        assert!(checks[1].detail.contains("secret.key (644)"), "{checks:?}");

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(
            dir.path().join("secret.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let checks = data_dir(dir.path());
        assert!(checks.iter().all(|c| c.status == Status::Ok), "{checks:?}");
    }

    #[test]
    fn a_missing_data_dir_fails() {
        let dir = tempfile::tempdir().unwrap();
        let checks = data_dir(&dir.path().join("nope"));
        assert_eq!(checks[0].status, Status::Fail);
    }

    #[test]
    fn free_disk_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let check = free_disk(dir.path());
        assert!(check.detail.ends_with(" free"), "{check:?}");
        assert!(free_bytes(dir.path()).unwrap() > 0);
    }

    #[test]
    fn a_damaged_journal_fails_its_quick_check_and_a_sound_one_passes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(JOURNAL_FILE);
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "create table t (x text);
                 with recursive n(i) as (select 1 union all select i + 1 from n where i < 200)
                 insert into t select hex(randomblob(2000)) from n;",
            )
            .unwrap();
        }
        assert_eq!(journal(dir.path(), false).status, Status::Ok);
        assert_eq!(journal(dir.path(), true).status, Status::Ok);
        // Scribble over the middle of the file (its pages, not its header).
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 8192] {
            *b = 0x5a;
        }
        std::fs::write(&path, bytes).unwrap();
        let check = journal(dir.path(), false);
        assert_eq!(check.status, Status::Fail, "{check:?}");
        assert!(check.detail.contains("is damaged"), "{check:?}");
        assert!(check.next.contains("move"), "{check:?}");
    }

    #[test]
    fn no_credential_at_all_fails() {
        let dir = tempfile::tempdir().unwrap();
        let checks = credentials(dir.path());
        assert_eq!(checks.len(), 1);
        assert_eq!(checks[0].status, Status::Fail);
        assert!(checks[0].next.contains("helix-hub login"), "{checks:?}");
    }
}
