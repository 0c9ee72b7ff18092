//! Why an envelope was refused: the texts a hub records as a command's reason and a spoke
//! prints before it exits non-zero.

/// What is wrong with a malformed envelope.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Malformation {
    /// A part that does not hold what it must; the text says which.
    #[error("{0}")]
    Part(String),
    /// Not an envelope's JSON (or, sealing, not writable as JSON).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Why an envelope was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    #[error("malformed envelope: {0}")]
    Malformed(#[from] Malformation),
    #[error("envelope version {0} is not supported (this side reads version 2)")]
    Version(u64),
    #[error("envelope is addressed to another recipient")]
    NotForUs,
    #[error("envelope sender {0} is not a paired device")]
    UnknownSender(String),
    #[error("forged envelope: the signature does not match its signer and contents")]
    BadSignature,
    #[error("expired envelope")]
    Expired,
    #[error("envelope does not decrypt with this key")]
    Undecryptable,
    #[error("envelope of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("spliced envelope: kind {found} where kind {expected} belongs")]
    WrongKind {
        expected: &'static str,
        found: &'static str,
    },
    #[error("spliced envelope: it belongs to command {found}, not {expected}")]
    WrongCommand { expected: String, found: String },
    #[error("spliced envelope: it carries seq {found} where seq {expected} belongs")]
    WrongSeq { expected: u64, found: u64 },
    #[error("spliced envelope: it names another hub as its signer")]
    WrongSigner,
}

/// A part of the envelope that does not hold what it must.
pub(super) fn malformed(part: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Malformed(Malformation::Part(part.into()))
}
