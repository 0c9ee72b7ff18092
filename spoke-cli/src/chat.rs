//! `helix chat [--session S]`: a conversation in the terminal. Each line is a turn of one
//! session (the hub gives the provider the earlier turns), streamed as it comes; Ctrl-C
//! cancels the running turn, and at the prompt Ctrl-C or Ctrl-D leaves. `/new` starts a new
//! session, `/model M` and `/provider P` change what the next turns run with, `/help` lists
//! these. The line editor (rustyline) keeps its history in memory only: prompts are not
//! written to disk.

use std::time::SystemTime;

use helix_mesh::{
    pb::{self, Provider},
    proto_ext::{ms_to_timestamp, system_time_to_ms},
};
use rustyline::{DefaultEditor, error::ReadlineError};

use crate::{
    client::Spoke,
    exit::Exit,
    follow::{Start, Until, follow},
    last_session,
    render::Printer,
    run::RunError,
};

/// How long a turn may wait on the hub before it expires unstarted.
const TURN_TTL: std::time::Duration = std::time::Duration::from_secs(3600);

const HELP: &str = "/new  start a new session · /model M  model for the next turns (/model: the default) · /provider P  anthropic, openai-codex or google-gemini (/provider: the agent's) · /exit  leave (or Ctrl-D)";

/// What the next turn runs with.
struct Turning {
    session: String,
    provider: Provider,
    model: Option<String>,
    agent: String,
}

/// Runs `helix chat`.
pub async fn chat(
    spoke: &Spoke,
    hub: Option<&str>,
    session: Option<String>,
    agent: String,
    quiet: bool,
) -> Result<Exit, RunError> {
    let target = spoke.resolve(hub)?;
    let hub_key = last_session::hub_key(&target);
    let mut printer = Printer::new(false, quiet);
    let mut turning = Turning {
        session: session.unwrap_or_else(new_session),
        provider: Provider::Unspecified,
        model: None,
        agent,
    };
    printer.note(&format!(
        "chatting in session {} (`helix chat --session {0}` continues it); /help for commands, Ctrl-D to leave",
        turning.session
    ));
    let mut editor = DefaultEditor::new().map_err(|e| RunError::LineEditor(e.to_string()))?;
    loop {
        // The editor blocks on the terminal: on a blocking thread, handed back after each line.
        let (back, line) = tokio::task::spawn_blocking(move || {
            let line = editor.readline("> ");
            (editor, line)
        })
        .await
        .map_err(|e| RunError::LineEditor(e.to_string()))?;
        editor = back;
        let line = match line {
            Ok(line) => line,
            Err(ReadlineError::Eof | ReadlineError::Interrupted) => return Ok(Exit::Ok),
            Err(e) => return Err(RunError::LineEditor(e.to_string())),
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let _ = editor.add_history_entry(text);
        if let Some(command) = text.strip_prefix('/') {
            match slash(command, &mut turning) {
                Slash::Said(what) => printer.note(&what),
                Slash::Leave => return Ok(Exit::Ok),
            }
            continue;
        }
        if let Err(e) = last_session::remember(&spoke.config.dir, &hub_key, &turning.session) {
            printer.note(&format!(
                "could not remember this session for --continue: {e}"
            ));
        }
        // Per turn only the answer and what went wrong: no "connecting…" lines between turns.
        let mut printer = Printer::new(false, true);
        let conn = match spoke.connect_with_progress(&target, &mut printer).await {
            Ok(conn) => conn,
            Err(e) => {
                // The hub may come back: say why, and keep the conversation open.
                printer.note(&format!("{e}"));
                continue;
            }
        };
        let request = request(&turning, text);
        match follow(
            spoke,
            &target,
            conn,
            Start::Execute(Box::new(request)),
            &mut printer,
            Until::Finished,
        )
        .await
        {
            Ok(_) => {}
            Err(e) => printer.note(&format!("{e}")),
        }
        printer.finish_output();
    }
}

enum Slash {
    Said(String),
    Leave,
}

fn slash(command: &str, turning: &mut Turning) -> Slash {
    let (name, arg) = command
        .split_once(char::is_whitespace)
        .map_or((command, ""), |(n, a)| (n, a.trim()));
    match name {
        "new" => {
            turning.session = new_session();
            Slash::Said(format!("new session {}", turning.session))
        }
        "model" if arg.is_empty() => {
            turning.model = None;
            Slash::Said("model: the provider's default".into())
        }
        "model" => {
            turning.model = Some(arg.to_owned());
            Slash::Said(format!("model: {arg}"))
        }
        "provider" if arg.is_empty() => {
            turning.provider = Provider::Unspecified;
            Slash::Said("provider: the agent's".into())
        }
        "provider" => match arg.parse::<Provider>() {
            Ok(p) if p != Provider::Unspecified => {
                turning.provider = p;
                Slash::Said(format!("provider: {arg}"))
            }
            _ => Slash::Said(format!(
                "unknown provider {arg:?}: anthropic, openai-codex or google-gemini"
            )),
        },
        "exit" | "quit" => Slash::Leave,
        "help" => Slash::Said(HELP.into()),
        other => Slash::Said(format!("unknown command /{other}; {HELP}")),
    }
}

fn new_session() -> String {
    format!("chat-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

fn request(turning: &Turning, content: &str) -> pb::ExecuteRequest {
    let now = SystemTime::now();
    pb::ExecuteRequest {
        command_id: uuid::Uuid::new_v4().to_string(),
        source_device_id: String::new(),
        source_user_id: String::new(),
        agent_id: turning.agent.clone(),
        provider: turning.provider as i32,
        content: content.to_owned(),
        session_id: turning.session.clone(),
        channel_id: None,
        created_at: Some(ms_to_timestamp(system_time_to_ms(now))),
        expires_at: Some(ms_to_timestamp(system_time_to_ms(now + TURN_TTL))),
        model: turning.model.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_commands_change_the_next_turns() {
        let mut t = Turning {
            session: "s".into(),
            provider: Provider::Unspecified,
            model: None,
            agent: "main".into(),
        };
        assert!(matches!(slash("model opus", &mut t), Slash::Said(_)));
        assert_eq!(t.model.as_deref(), Some("opus"));
        assert!(matches!(slash("model", &mut t), Slash::Said(_)));
        assert_eq!(t.model, None);
        assert!(matches!(
            slash("provider google-gemini", &mut t),
            Slash::Said(_)
        ));
        assert_eq!(t.provider, Provider::GoogleGemini);
        let Slash::Said(said) = slash("provider openai", &mut t) else {
            panic!("said nothing");
        };
        assert!(said.starts_with("unknown provider"), "{said}");
        assert_eq!(t.provider, Provider::GoogleGemini);
        assert!(matches!(slash("new", &mut t), Slash::Said(_)));
        assert!(t.session.starts_with("chat-"));
        assert!(matches!(slash("exit", &mut t), Slash::Leave));
        assert_eq!(request(&t, "hi").session_id, t.session);
    }
}
