//! Secrets from stdin, for both binaries: `helix cloud login` (password, emailed code, access
//! token) and `helix-hub login` / `helix-hub cloud login` (API key, setup-token, password…).
//! Secrets are never flag values; they are piped in, or typed after a prompt on stderr when
//! stdin is a terminal.
//!
//! Here, in the wire crate, because it is the one library both binaries (and helix-discovery)
//! already depend on, and it holds the other small helpers both sides share ([`crate::fsutil`]).

use std::io::{self, IsTerminal, Read, Write};

/// What to read, and how to tell the person.
#[derive(Debug, Clone, Copy)]
pub struct SecretRequest<'a> {
    /// What the secret is, as the messages name it ("API key", "password").
    pub what: &'a str,
    /// The line written to stderr first when stdin is a terminal.
    pub prompt: &'a str,
    pub shape: Shape<'a>,
}

/// How the secret is cut out of what stdin gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape<'a> {
    /// One token (an API key, a setup-token): whitespace around it goes, none may be inside.
    /// `example` shows how to pipe it in, for the error when stdin is empty.
    Token { example: &'a str },
    /// A password, code or access token: only the line ending goes (passwords may contain
    /// spaces).
    Passphrase,
}

/// Reading a secret from stdin failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretInputError {
    #[error("reading the {what} from stdin")]
    Read {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("no {what} on stdin{}", example.as_deref().map(|e| format!("; pipe it in, e.g. {e}")).unwrap_or_default())]
    Empty {
        what: String,
        /// How to pipe it in, for [`Shape::Token`].
        example: Option<String>,
    },
    #[error("the {what} on stdin contains whitespace; pass exactly one {what}")]
    Whitespace { what: String },
}

/// One secret from stdin, with `request.prompt` on stderr first when stdin is a terminal.
pub fn read_secret(request: &SecretRequest<'_>) -> Result<String, SecretInputError> {
    let text = read_all(request.prompt).map_err(|source| SecretInputError::Read {
        what: request.what.to_owned(),
        source,
    })?;
    cut(request, &text)
}

/// All of stdin as text, with `prompt` on stderr first when stdin is a terminal (also how
/// `helix run -` reads a prompt).
pub fn read_all(prompt: &str) -> io::Result<String> {
    let stdin = io::stdin();
    if stdin.is_terminal() {
        // A prompt that cannot be shown is no reason not to read.
        let _ = writeln!(io::stderr(), "{prompt}");
    }
    let mut text = String::new();
    stdin.lock().read_to_string(&mut text)?;
    Ok(text)
}

/// The secret in `text`, cut to `request.shape`.
fn cut(request: &SecretRequest<'_>, text: &str) -> Result<String, SecretInputError> {
    let what = request.what;
    let secret = match request.shape {
        Shape::Token { .. } => text.trim(),
        Shape::Passphrase => text.trim_end_matches(['\r', '\n']),
    };
    if secret.is_empty() {
        return Err(SecretInputError::Empty {
            what: what.to_owned(),
            example: match request.shape {
                Shape::Token { example } => Some(example.to_owned()),
                Shape::Passphrase => None,
            },
        });
    }
    if matches!(request.shape, Shape::Token { .. }) && secret.chars().any(char::is_whitespace) {
        return Err(SecretInputError::Whitespace {
            what: what.to_owned(),
        });
    }
    Ok(secret.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: SecretRequest<'static> = SecretRequest {
        what: "API key",
        prompt: "",
        shape: Shape::Token {
            example: "printf %s \"$KEY\" | helix-hub login anthropic --api-key",
        },
    };
    const PASSWORD: SecretRequest<'static> = SecretRequest {
        what: "password",
        prompt: "",
        shape: Shape::Passphrase,
    };

    #[test]
    fn a_token_loses_the_whitespace_around_it_and_may_have_none_inside() {
        assert_eq!(cut(&KEY, "  sk-ant-1\r\n").unwrap(), "sk-ant-1");
        assert_eq!(
            cut(&KEY, "sk ant\n").unwrap_err().to_string(),
            "the API key on stdin contains whitespace; pass exactly one API key"
        );
        assert_eq!(
            cut(&KEY, " \n").unwrap_err().to_string(),
            "no API key on stdin; pipe it in, e.g. printf %s \"$KEY\" | helix-hub login anthropic --api-key"
        );
    }

    #[test]
    fn a_passphrase_loses_only_its_line_ending() {
        assert_eq!(
            cut(&PASSWORD, " correct horse \r\n").unwrap(),
            " correct horse "
        );
        assert_eq!(
            cut(&PASSWORD, "\n").unwrap_err().to_string(),
            "no password on stdin"
        );
    }

    #[test]
    fn a_read_error_keeps_its_source() {
        let err = SecretInputError::Read {
            what: "password".into(),
            source: io::Error::other("closed"),
        };
        assert_eq!(err.to_string(), "reading the password from stdin");
        assert_eq!(
            crate::iroh_grpc::error_chain(&err),
            "reading the password from stdin: closed"
        );
    }
}
