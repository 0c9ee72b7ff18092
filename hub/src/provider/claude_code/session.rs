//! Claude Code's own sessions, for the commands of a named Helix session.
//!
//! Claude Code keeps a conversation in a file of its own
//! (`$HOME/.claude/projects/<working dir, mangled>/<session id>.jsonl`) and continues it with
//! `--resume`. The hub gives each Helix session a directory that outlives its commands
//! (`<data dir>/claude-code/sessions/<hash of the session id>/`): Claude Code's `HOME`, and
//! its working directory unless `workdir` is configured (it files sessions by working
//! directory, so that must not change between turns either).
//!
//! Every attempt runs in a new CLI session whose id the hub picks (`--session-id`); a turn
//! that continues the conversation resumes a copy of the previous completed turn's session
//! (`--resume PREVIOUS --fork-session`). So the session of a completed turn holds exactly the
//! completed turns up to it: a failed or cancelled attempt's session is never resumed (and is
//! removed), as a failed turn is never given to the other providers either. The journal keeps,
//! with each turn, the CLI session it ran in and how many turns that session holds.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The CLI session one attempt runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliSession {
    /// Its id (`--session-id`), new for every attempt.
    pub id: Uuid,
    /// The session it continues, as a copy (`--resume <id> --fork-session`).
    pub resume: Option<Uuid>,
    /// The Helix session's directory: `HOME`, and the working directory unless configured.
    pub home: PathBuf,
}

/// How a command continues its Helix session in Claude Code, decided before its first
/// attempt (its `started` event says so).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CliPlan {
    pub home: PathBuf,
    /// The previous completed turn's CLI session, when its files are still there.
    pub resume: Option<Uuid>,
    /// Completed turns that session holds.
    pub turns: u32,
    /// What the person should know (a lost session, turns that ran elsewhere); may be empty.
    pub note: String,
}

impl CliPlan {
    /// The CLI session of a new attempt.
    pub fn attempt(&self) -> CliSession {
        CliSession {
            id: Uuid::new_v4(),
            resume: self.resume,
            home: self.home.clone(),
        }
    }
}

/// What the journal holds of a Helix session, for [`ClaudeSessions::plan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Past<'a> {
    /// The newest completed turn's CLI session and the turns it holds, if it ran in Claude Code.
    pub newest: Option<(&'a str, u32)>,
    /// Completed turns of the session in all.
    pub completed: u32,
}

/// Where the hub keeps Claude Code's sessions.
#[derive(Debug, Clone)]
pub struct ClaudeSessions {
    root: PathBuf,
}

impl ClaudeSessions {
    /// The sessions of the hub whose data dir is `data_dir`.
    pub fn in_data_dir(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("claude-code").join("sessions"),
        }
    }

    /// The directory of Helix session `session_id`: named by a hash, since a session id is
    /// any text (it may hold `/` or `..`).
    pub fn home(&self, session_id: &str) -> PathBuf {
        let digest = Sha256::digest(session_id.as_bytes());
        self.root.join(hex::encode(&digest[..16]))
    }

    /// How the next command of `session_id` continues it.
    pub fn plan(&self, session_id: &str, past: Past<'_>) -> CliPlan {
        let home = self.home(session_id);
        let plural = |n: u32| if n == 1 { "" } else { "s" };
        let (resume, turns, note) = match past.newest {
            Some((id, turns)) => match Uuid::parse_str(id) {
                Ok(id) if exists(&home, id) => (Some(id), turns, String::new()),
                _ => (
                    None,
                    0,
                    format!(
                        "the Claude Code session of this conversation ({id}) is gone (its files were removed): this turn starts a new one, without the {n} earlier turn{s}",
                        n = past.completed,
                        s = plural(past.completed),
                    ),
                ),
            },
            None if past.completed > 0 => (
                None,
                0,
                format!(
                    "{n} earlier turn{s} of this session did not run through Claude Code: its Claude Code session starts with this turn, without them",
                    n = past.completed,
                    s = plural(past.completed),
                ),
            ),
            None => (None, 0, String::new()),
        };
        CliPlan {
            home,
            resume,
            turns,
            note,
        }
    }
}

/// Whether CLI session `id` has its file under `home` (in any working directory's folder).
pub fn exists(home: &Path, id: Uuid) -> bool {
    session_files(home, id).next().is_some()
}

/// Removes CLI session `id`'s files under `home` (a failed attempt's, or one a newer
/// completed turn's copy has replaced); what is already gone is fine.
pub fn remove(home: &Path, id: Uuid) {
    for file in session_files(home, id) {
        if let Err(e) = std::fs::remove_file(&file) {
            tracing::debug!(file = %file.display(), error = %e, "removing a claude code session");
        }
        // Subagents' transcripts, when there were any, sit in a folder of the same name.
        let _ = std::fs::remove_dir_all(file.with_extension(""));
    }
}

fn session_files(home: &Path, id: Uuid) -> impl Iterator<Item = PathBuf> {
    let name = format!("{id}.jsonl");
    std::fs::read_dir(home.join(".claude").join("projects"))
        .into_iter()
        .flatten()
        .flatten()
        .map(move |project| project.path().join(&name))
        .filter(|file| file.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session_file(home: &Path, project: &str, id: Uuid) {
        let dir = home.join(".claude/projects").join(project);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{id}.jsonl")), "{}\n").unwrap();
    }

    #[test]
    fn each_helix_session_has_its_own_directory_whatever_its_name() {
        let sessions = ClaudeSessions::in_data_dir(Path::new("/data"));
        let a = sessions.home("../../etc");
        assert!(a.starts_with("/data/claude-code/sessions"));
        assert_eq!(a.components().count(), 5, "{}", a.display());
        assert_ne!(a, sessions.home("../../etc2"));
        assert_eq!(a, sessions.home("../../etc"));
    }

    #[test]
    fn a_first_turn_starts_fresh_without_a_note() {
        let data = tempfile::tempdir().unwrap();
        let sessions = ClaudeSessions::in_data_dir(data.path());
        let plan = sessions.plan(
            "s",
            Past {
                newest: None,
                completed: 0,
            },
        );
        assert_eq!((plan.resume, plan.turns, plan.note.as_str()), (None, 0, ""));
        let attempt = plan.attempt();
        assert_ne!(attempt.id, plan.attempt().id, "a new id for every attempt");
        assert_eq!(attempt.home, sessions.home("s"));
    }

    #[test]
    fn a_session_whose_file_is_there_is_resumed() {
        let data = tempfile::tempdir().unwrap();
        let sessions = ClaudeSessions::in_data_dir(data.path());
        let id = Uuid::new_v4();
        session_file(&sessions.home("s"), "-some-work-dir", id);
        let text = id.to_string();
        let plan = sessions.plan(
            "s",
            Past {
                newest: Some((&text, 2)),
                completed: 2,
            },
        );
        assert_eq!(
            (plan.resume, plan.turns, plan.note.as_str()),
            (Some(id), 2, "")
        );
        assert_eq!(plan.attempt().resume, Some(id));

        remove(&sessions.home("s"), id);
        assert!(!exists(&sessions.home("s"), id));
    }

    #[test]
    fn a_lost_session_starts_fresh_and_says_so() {
        let data = tempfile::tempdir().unwrap();
        let sessions = ClaudeSessions::in_data_dir(data.path());
        let id = Uuid::new_v4().to_string();
        let plan = sessions.plan(
            "s",
            Past {
                newest: Some((&id, 3)),
                completed: 3,
            },
        );
        assert_eq!((plan.resume, plan.turns), (None, 0));
        assert_eq!(
            plan.note,
            format!(
                "the Claude Code session of this conversation ({id}) is gone (its files were removed): this turn starts a new one, without the 3 earlier turns"
            )
        );
    }

    #[test]
    fn turns_that_ran_elsewhere_are_named() {
        let data = tempfile::tempdir().unwrap();
        let plan = ClaudeSessions::in_data_dir(data.path()).plan(
            "s",
            Past {
                newest: None,
                completed: 1,
            },
        );
        assert_eq!(plan.resume, None);
        assert_eq!(
            plan.note,
            "1 earlier turn of this session did not run through Claude Code: its Claude Code session starts with this turn, without them"
        );
    }
}
