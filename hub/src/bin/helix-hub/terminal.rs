//! The terminal: secrets read from stdin (through the shared
//! [`helix_mesh::secret_input::read_secret`], with the hub's prompts), product output on
//! stdout, messages on stderr.

use helix_mesh::secret_input::{SecretRequest, Shape, read_secret};

/// One secret from stdin (trimmed, no whitespace inside). `example` shows how to pipe it in,
/// for the error when stdin is empty.
pub(crate) fn read_secret_from_stdin(what: &str, example: &str) -> anyhow::Result<String> {
    Ok(read_secret(&SecretRequest {
        what,
        prompt: &format!("Paste the {what} and press Enter, then Ctrl-D:"),
        shape: Shape::Token { example },
    })?)
}

/// A password, code or token from stdin: only the line ending is removed (passwords may
/// contain spaces).
pub(crate) fn read_password_from_stdin(what: &str) -> anyhow::Result<String> {
    Ok(read_secret(&SecretRequest {
        what,
        prompt: &format!("Enter the {what}, then Enter and Ctrl-D:"),
        shape: Shape::Passphrase,
    })?)
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
