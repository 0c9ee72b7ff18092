//! What one command's attempts send: the provider, model and system prompt, and how the
//! command continues its session: the earlier turns its provider is given (within the agent's
//! history budget), or for Claude Code the CLI session it resumes. Also what a command leaves
//! of its turn when it ends.

use std::sync::Arc;

use helix_mesh::pb::Provider;

use super::{Executor, finished};
use crate::{
    command::{EventKind, FinalStatus, NewCommand},
    credentials::Credential,
    history::{HistoryBudget, SessionHistory, Turns, dropped_note},
    journal::TurnEnd,
    provider::{
        ProviderExec,
        claude_code::{self, ClaudeSessions, CliPlan, CliSession, Past},
    },
};

/// What every attempt of one command sends, besides the credential.
pub(super) struct Plan {
    pub(super) cmd: NewCommand,
    pub(super) exec: Arc<dyn ProviderExec>,
    pub(super) model: String,
    pub(super) system: Option<String>,
    /// The earlier turns of its session it continues.
    pub(super) history: Turns,
    /// Through Claude Code: the CLI session it continues instead.
    cli: Option<CliPlan>,
    /// What its `started` events say (the attempt aside).
    history_turns: u32,
    history_dropped: u32,
    note: String,
}

impl Plan {
    /// The `started` event of `attempt`.
    pub(super) fn started(&self, attempt: u32) -> EventKind {
        EventKind::Started {
            attempt,
            history_turns: self.history_turns,
            history_dropped: self.history_dropped,
            note: self.note.clone(),
        }
    }
}

impl Executor {
    /// The provider and settings for `cmd` (the agent's and the config's defaults filled in)
    /// and how it continues its session, or its `finished` event when this hub does not
    /// support its provider or the journal cannot be read.
    pub(super) async fn plan(&self, cmd: NewCommand) -> Result<Plan, EventKind> {
        let Some(exec) = self.inner.providers.get(cmd.provider).cloned() else {
            return Err(finished(
                FinalStatus::Failed,
                &format!("provider {} is not supported by this hub", cmd.provider),
                0,
            ));
        };
        let config = &self.inner.config;
        let agent = config.agents.get(&cmd.agent_id);
        let model = cmd
            .model
            .clone()
            .or_else(|| agent.and_then(|a| a.model.clone()))
            .unwrap_or_else(|| config.default_model(cmd.provider).to_owned());
        let system = agent.and_then(|a| a.system.clone());
        let budget = config.history_budget(&cmd.agent_id);
        // A session named after the command is its first turn: nothing to read. An agent
        // with a budget of no turns has no history at all (nothing is "left out" either).
        if cmd.is_own_session() || budget.max_turns == 0 {
            return Ok(Plan {
                cmd,
                exec,
                model,
                system,
                history: Arc::new([]),
                cli: None,
                history_turns: 0,
                history_dropped: 0,
                note: String::new(),
            });
        }
        // Claude Code keeps the conversation in its own session, and compacts it itself: the
        // budget does not apply, and no earlier text is read.
        let claude_code = cmd.provider == Provider::Anthropic && self.runs_claude_code();
        let read_budget = if claude_code {
            HistoryBudget {
                max_turns: 0,
                ..budget
            }
        } else {
            budget
        };
        let history: SessionHistory = self
            .inner
            .journal
            .session_history(cmd.session_id.clone(), read_budget)
            .await
            .map_err(|e| {
                finished(
                    FinalStatus::Failed,
                    &format!("reading the session's earlier turns: {e}"),
                    0,
                )
            })?;
        if claude_code {
            let sessions = ClaudeSessions::in_data_dir(self.inner.journal.data_dir());
            let past = Past {
                newest: history
                    .cli_session
                    .as_ref()
                    .map(|(id, turns)| (id.as_str(), *turns)),
                completed: history.completed,
            };
            let cli = sessions.plan(&cmd.session_id, past);
            return Ok(Plan {
                cmd,
                exec,
                model,
                system,
                history: Arc::new([]),
                history_turns: cli.turns,
                history_dropped: 0,
                note: cli.note.clone(),
                cli: Some(cli),
            });
        }
        let history_turns = u32::try_from(history.turns.len()).unwrap_or(u32::MAX);
        Ok(Plan {
            cmd,
            exec,
            model,
            system,
            history: history.turns.into(),
            cli: None,
            history_turns,
            history_dropped: history.dropped,
            note: dropped_note(history.dropped, &budget),
        })
    }

    /// Whether an `anthropic` command runs through Claude Code: the stored credential is a
    /// setup-token or an OAuth token (an API key goes to the Messages API).
    fn runs_claude_code(&self) -> bool {
        matches!(
            self.inner
                .refresher
                .store()
                .credential_for(Provider::Anthropic),
            Ok(Some(Credential::Token { .. } | Credential::OAuth { .. }))
        )
    }
}

/// What a command's attempts have left of its turn: the text of the last attempt, and the
/// CLI session it ran in.
#[derive(Debug, Default)]
pub(super) struct TurnSoFar {
    pub(super) answer: String,
    pub(super) cli: Option<CliSession>,
    /// Completed turns the resumed CLI session holds.
    cli_turns: u32,
}

impl TurnSoFar {
    /// A new attempt of `plan` begins: its text starts empty, in a CLI session of its own.
    pub(super) fn attempt(&mut self, plan: &Plan) {
        self.answer.clear();
        self.cli = plan.cli.as_ref().map(CliPlan::attempt);
        self.cli_turns = plan.cli.as_ref().map_or(0, |c| c.turns);
    }

    /// The attempt failed and another follows: its CLI session is never resumed.
    pub(super) fn attempt_failed(&mut self) {
        if let Some(cli) = self.cli.take() {
            claude_code::remove(&cli.home, cli.id);
        }
    }

    /// The command ended with `end`.
    pub(super) fn ended(mut self, end: EventKind) -> Ended {
        let completed = matches!(
            end,
            EventKind::Finished {
                status: FinalStatus::Completed,
                ..
            }
        );
        // A completed turn's CLI session is the conversation so far, if Claude Code really ran
        // it (the credential may have changed since the plan); any other is dropped.
        let cli = match self.cli.take() {
            Some(cli) if completed && claude_code::exists(&cli.home, cli.id) => Some(cli),
            Some(cli) => {
                claude_code::remove(&cli.home, cli.id);
                None
            }
            None => None,
        };
        let turn = TurnEnd {
            answer: completed.then_some(self.answer),
            cli_session: cli.as_ref().map(|c| c.id.to_string()),
            cli_turns: cli.as_ref().map_or(0, |_| self.cli_turns + 1),
        };
        Ended {
            end,
            turn,
            superseded: Superseded(cli),
        }
    }
}

/// How a command ended, and what to tidy once that is stored.
#[derive(Debug)]
pub(super) struct Ended {
    pub(super) end: EventKind,
    pub(super) turn: TurnEnd,
    pub(super) superseded: Superseded,
}

impl Ended {
    /// A command that never ran.
    pub(super) fn without_turn(end: EventKind) -> Self {
        Self {
            end,
            turn: TurnEnd::default(),
            superseded: Superseded(None),
        }
    }
}

/// The CLI session of a completed turn, which resumed a copy of the previous one.
#[derive(Debug)]
pub(super) struct Superseded(Option<CliSession>);

impl Superseded {
    /// After the turn is stored: the CLI session it resumed is no longer the newest of its
    /// conversation, and nothing resumes it again.
    pub(super) fn remove(self) {
        if let Some(CliSession {
            resume: Some(previous),
            home,
            ..
        }) = self.0
        {
            claude_code::remove(&home, previous);
        }
    }
}
