//! Conversations: the earlier turns of a session that a command's provider is given, and the
//! budget that bounds them.
//!
//! A session is the `session_id` its commands carry. Each command that ends is one turn of its
//! session (the journal stores it with the command's `finished` event); only completed turns
//! are given to a provider, as the alternating user/assistant messages each API expects, and
//! only the newest ones that fit the agent's [`HistoryBudget`]: the oldest are left out first,
//! and the command's `started` event says how many.

use std::sync::Arc;

/// Most earlier turns given to a provider when the agent sets no `history_turns`. A turn is
/// a prompt and its answer, so this is 200 messages: far more than a conversation usually
/// has, which leaves the byte budget to decide.
pub const DEFAULT_HISTORY_TURNS: u32 = 100;

/// Most bytes of earlier prompts and answers given to a provider when the agent sets no
/// `history_bytes`: 256 KiB, about 65,000–90,000 tokens of text (3–4 bytes a token). That is
/// under half of the smallest context window of the providers (Claude's 200,000 tokens;
/// Codex's and Gemini's are larger), which leaves room for the system prompt, the new prompt
/// and the answer.
pub const DEFAULT_HISTORY_BYTES: u64 = 256 * 1024;

/// One earlier completed turn, as it is given back to a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// What the person asked (the command's content).
    pub prompt: String,
    /// The whole answer.
    pub answer: String,
}

/// The earlier turns one command continues, oldest first. Cheap to clone (every attempt of
/// the command sends the same turns).
pub type Turns = Arc<[Turn]>;

/// How much of a session's past an agent's commands are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBudget {
    /// Most earlier turns (0: none, every command is a single turn).
    pub max_turns: u32,
    /// Most bytes of their prompts and answers together.
    pub max_bytes: u64,
}

impl Default for HistoryBudget {
    fn default() -> Self {
        Self {
            max_turns: DEFAULT_HISTORY_TURNS,
            max_bytes: DEFAULT_HISTORY_BYTES,
        }
    }
}

impl HistoryBudget {
    /// How many of the newest turns fit, given each completed turn's size in bytes, newest
    /// first. What is kept is always the newest turns without a gap: a turn that does not fit
    /// leaves out every older one too (a conversation with a hole would mislead the model).
    pub fn newest_that_fit(&self, sizes_newest_first: impl IntoIterator<Item = u64>) -> usize {
        let mut bytes = 0u64;
        let mut kept = 0usize;
        for size in sizes_newest_first {
            if kept >= self.max_turns as usize {
                break;
            }
            bytes = bytes.saturating_add(size);
            if bytes > self.max_bytes {
                break;
            }
            kept += 1;
        }
        kept
    }
}

/// What a command gets of its session's past.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionHistory {
    /// The completed turns given to the provider, oldest first.
    pub turns: Vec<Turn>,
    /// Completed turns left out because of the budget (the oldest ones).
    pub dropped: u32,
    /// The Claude Code session of the newest completed turn, when it ran through Claude Code
    /// (that session holds the conversation up to it), and how many turns it holds.
    pub cli_session: Option<(String, u32)>,
    /// Completed turns of the session in all (given, left out, or with an empty answer).
    pub completed: u32,
}

/// The `started` note for `dropped` turns left out by `budget`; empty when none were.
pub fn dropped_note(dropped: u32, budget: &HistoryBudget) -> String {
    match dropped {
        0 => String::new(),
        n => format!(
            "{n} earlier turn{s} of this session left out: the agent's history budget is {turns} turn{ts} and {bytes} bytes (history_turns, history_bytes)",
            s = if n == 1 { "" } else { "s" },
            turns = budget.max_turns,
            ts = if budget.max_turns == 1 { "" } else { "s" },
            bytes = budget.max_bytes,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(max_turns: u32, max_bytes: u64) -> HistoryBudget {
        HistoryBudget {
            max_turns,
            max_bytes,
        }
    }

    #[test]
    fn everything_fits_a_roomy_budget() {
        assert_eq!(budget(10, 1000).newest_that_fit([10, 20, 30]), 3);
        assert_eq!(budget(10, 1000).newest_that_fit([]), 0);
    }

    #[test]
    fn the_turn_count_keeps_the_newest() {
        assert_eq!(budget(2, 1000).newest_that_fit([10, 20, 30]), 2);
        assert_eq!(budget(0, 1000).newest_that_fit([10]), 0);
    }

    #[test]
    fn the_byte_budget_is_inclusive_and_cuts_at_the_first_turn_that_overflows() {
        assert_eq!(budget(10, 30).newest_that_fit([10, 20, 1]), 2);
        assert_eq!(budget(10, 29).newest_that_fit([10, 20, 1]), 1);
        // A newest turn too big on its own leaves the whole past out: no gaps.
        assert_eq!(budget(10, 5).newest_that_fit([10, 1, 1]), 0);
    }

    #[test]
    fn the_note_names_the_count_and_the_budget() {
        assert_eq!(dropped_note(0, &budget(2, 10)), "");
        assert_eq!(
            dropped_note(1, &budget(2, 10)),
            "1 earlier turn of this session left out: the agent's history budget is 2 turns and 10 bytes (history_turns, history_bytes)"
        );
        assert!(dropped_note(3, &budget(1, 10)).starts_with(
            "3 earlier turns of this session left out: the agent's history budget is 1 turn and"
        ));
    }
}
