//! The executor's waiting room: commands in submission order, with a session's commands one
//! at a time.
//!
//! A command is *ready* when no other command of its session is ready, starting or running;
//! ready commands start in submission order as workers become free. A command whose session
//! is busy waits behind it (held), and becomes ready when the one before it leaves, at its
//! place in submission order among the ready ones: later commands of other sessions that are
//! still waiting do not overtake it, and nothing of another session waits for it.

use std::collections::{HashMap, VecDeque};

use uuid::Uuid;

use super::Waiting;

#[derive(Debug, Default)]
pub(super) struct Queue {
    /// Commands that start as soon as a worker is free, oldest first.
    ready: VecDeque<Waiting>,
    /// Every session with a command ready, starting or running, and the session's later
    /// commands waiting behind it, oldest first.
    sessions: HashMap<String, VecDeque<Waiting>>,
    /// How many commands wait in `sessions`.
    held: usize,
    /// The submission order given to the next command pushed.
    next_order: u64,
}

impl Queue {
    /// Commands waiting, ready or held.
    pub(super) fn len(&self) -> usize {
        self.ready.len() + self.held
    }

    /// Claims `session` for a command that starts at once, without waiting: only when no ready
    /// command would be overtaken and the session is idle. The claim ends with [`Queue::release`].
    pub(super) fn claim_idle(&mut self, session: &str) -> bool {
        if !self.ready.is_empty() || self.sessions.contains_key(session) {
            return false;
        }
        self.sessions.insert(session.to_owned(), VecDeque::new());
        true
    }

    /// Adds a command after every one submitted before it. Returns whether it is ready (its
    /// session was idle, and is now claimed by it).
    pub(super) fn push(&mut self, mut waiting: Waiting) -> bool {
        waiting.order = self.next_order;
        self.next_order += 1;
        match self.sessions.get_mut(&waiting.session_id) {
            Some(behind) => {
                behind.push_back(waiting);
                self.held += 1;
                false
            }
            None => {
                self.sessions
                    .insert(waiting.session_id.clone(), VecDeque::new());
                self.ready.push_back(waiting);
                true
            }
        }
    }

    /// The oldest ready command. Its session stays claimed until [`Queue::release`].
    pub(super) fn pop_ready(&mut self) -> Option<Waiting> {
        self.ready.pop_front()
    }

    /// `session`'s command has left (it ended, or never started): the session's next command
    /// becomes ready. Returns whether one did.
    pub(super) fn release(&mut self, session: &str) -> bool {
        let Some(behind) = self.sessions.get_mut(session) else {
            return false;
        };
        let Some(next) = behind.pop_front() else {
            self.sessions.remove(session);
            return false;
        };
        self.held -= 1;
        let at = self.ready.partition_point(|w| w.order < next.order);
        self.ready.insert(at, next);
        true
    }

    /// Takes a waiting command out (it is cancelled). Returns it and whether that made another
    /// command of its session ready.
    pub(super) fn remove(&mut self, command_id: Uuid) -> Option<(Waiting, bool)> {
        if let Some(i) = self.ready.iter().position(|w| w.command_id == command_id) {
            let waiting = self.ready.remove(i)?;
            let next_ready = self.release(&waiting.session_id);
            return Some((waiting, next_ready));
        }
        for behind in self.sessions.values_mut() {
            if let Some(i) = behind.iter().position(|w| w.command_id == command_id) {
                let waiting = behind.remove(i)?;
                self.held -= 1;
                return Some((waiting, false));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(session: &str) -> Waiting {
        Waiting {
            command_id: Uuid::new_v4(),
            session_id: session.into(),
            expires_at_ms: i64::MAX,
            command: None,
            started: false,
            order: 0,
        }
    }

    fn sessions_of_ready(q: &Queue) -> Vec<&str> {
        q.ready.iter().map(|w| w.session_id.as_str()).collect()
    }

    #[test]
    fn a_session_has_one_command_ready_at_a_time_and_others_are_not_held_up() {
        let mut q = Queue::default();
        assert!(q.push(waiting("a")));
        assert!(!q.push(waiting("a")), "behind the first of its session");
        assert!(q.push(waiting("b")));
        assert_eq!(q.len(), 3);
        assert_eq!(sessions_of_ready(&q), ["a", "b"]);
        let first = q.pop_ready().unwrap();
        assert_eq!(first.session_id, "a");
        // a's second waits for the first to end, b starts meanwhile.
        assert_eq!(q.pop_ready().unwrap().session_id, "b");
        assert!(q.pop_ready().is_none());
        assert!(q.release("a"));
        assert_eq!(q.pop_ready().unwrap().session_id, "a");
        assert!(!q.release("a"));
        assert!(!q.release("b"));
        assert_eq!(q.len(), 0);
        assert!(q.sessions.is_empty(), "idle sessions are forgotten");
    }

    #[test]
    fn a_command_that_becomes_ready_keeps_its_place_in_submission_order() {
        let mut q = Queue::default();
        q.push(waiting("a"));
        q.push(waiting("a"));
        let running = q.pop_ready().unwrap();
        q.push(waiting("c"));
        q.push(waiting("d"));
        // a's second was submitted before c and d: it goes first once a is free.
        assert!(q.release(&running.session_id));
        assert_eq!(sessions_of_ready(&q), ["a", "c", "d"]);
    }

    #[test]
    fn a_claim_to_start_at_once_needs_an_idle_session_and_nothing_ready() {
        let mut q = Queue::default();
        assert!(q.claim_idle("a"));
        assert!(!q.claim_idle("a"), "claimed");
        assert!(!q.push(waiting("a")), "waits behind the one that started");
        assert!(q.claim_idle("b"), "nothing ready: b may start");
        q.push(waiting("c"));
        assert!(!q.claim_idle("d"), "c is ready and would be overtaken");
        assert!(q.release("a"));
        assert_eq!(sessions_of_ready(&q), ["a", "c"]);
    }

    #[test]
    fn removing_a_ready_command_readies_the_next_of_its_session() {
        let mut q = Queue::default();
        let first = waiting("a");
        let first_id = first.command_id;
        q.push(first);
        let second = waiting("a");
        let second_id = second.command_id;
        q.push(second);
        let third = waiting("a");
        let third_id = third.command_id;
        q.push(third);
        let (removed, next_ready) = q.remove(second_id).unwrap();
        assert_eq!(removed.command_id, second_id);
        assert!(!next_ready, "it was held");
        let (_, next_ready) = q.remove(first_id).unwrap();
        assert!(next_ready);
        assert_eq!(q.pop_ready().unwrap().command_id, third_id);
        assert!(q.remove(first_id).is_none());
        assert_eq!(q.len(), 0);
    }
}
