//! The terminal: secrets read from stdin, product output on stdout, messages on stderr.

use std::io::{IsTerminal, Read};

use anyhow::{Context, bail};

/// One secret from stdin (trimmed, no whitespace inside). `example` shows how to pipe it in,
/// for the error when stdin is empty.
pub(crate) fn read_secret_from_stdin(what: &str, example: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        say(&format!("Paste the {what} and press Enter, then Ctrl-D:"));
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let secret = text.trim();
    if secret.is_empty() {
        bail!("no {what} on stdin; pipe it in, e.g. {example}");
    }
    if secret.chars().any(char::is_whitespace) {
        bail!("the {what} on stdin contains whitespace; pass exactly one {what}");
    }
    Ok(secret.to_owned())
}

/// A password, code or token from stdin: only the line ending is removed (passwords may
/// contain spaces).
pub(crate) fn read_password_from_stdin(what: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        say(&format!("Enter the {what}, then Enter and Ctrl-D:"));
    }
    let mut text = String::new();
    stdin
        .lock()
        .read_to_string(&mut text)
        .with_context(|| format!("reading the {what} from stdin"))?;
    let secret = text.trim_end_matches(['\r', '\n']);
    if secret.is_empty() {
        bail!("no {what} on stdin");
    }
    Ok(secret.to_owned())
}

/// Product output (stdout).
#[allow(clippy::print_stdout)]
pub(crate) fn out(line: &str) {
    println!("{line}");
}

/// Messages for the person (stderr).
#[allow(clippy::print_stderr)]
pub(crate) fn say(line: &str) {
    eprintln!("{line}");
}
