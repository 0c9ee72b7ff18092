//! The content shape: under a command's content key, signed by the hub (prompt, events).

use data_encoding::BASE64URL_NOPAD;
use iroh::SecretKey;

use super::{
    ContentHeader, ContentKey, ContentKind, EnvelopeError, MAX_PLAINTEXT, VERSION,
    crypto::{check_int, decrypt, encrypt, signed_bytes, verify},
    wire::{self, ContentWire, decode_fixed},
};

/// The hub encrypts one piece of a command's content under its key and signs it, with a
/// fresh nonce.
pub fn seal_content(
    hub: &SecretKey,
    key: &ContentKey,
    kind: ContentKind,
    context: &str,
    seq: u64,
    plaintext: &[u8],
) -> Result<String, EnvelopeError> {
    seal_content_with(hub, key, kind, context, seq, plaintext, &rand::random())
}

/// [`seal_content`] with the given nonce (golden vectors; never reuse one under a key).
pub fn seal_content_with(
    hub: &SecretKey,
    key: &ContentKey,
    kind: ContentKind,
    context: &str,
    seq: u64,
    plaintext: &[u8],
    nonce: &[u8; 12],
) -> Result<String, EnvelopeError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(EnvelopeError::TooLarge(plaintext.len()));
    }
    check_int("seq", seq)?;
    let mut wire = ContentWire {
        v: VERSION,
        kind,
        hub: hub.public().to_string(),
        context: context.to_owned(),
        seq,
        nonce: BASE64URL_NOPAD.encode(nonce),
        ct: String::new(),
        sig: String::new(),
    };
    let aad = wire.header_bytes();
    let ct = encrypt(key.as_bytes(), nonce, &aad, plaintext);
    wire.sig = BASE64URL_NOPAD.encode(&hub.sign(&signed_bytes(&aad, &ct)).to_bytes());
    wire.ct = BASE64URL_NOPAD.encode(&ct);
    wire.to_text()
}

/// Opens a content envelope, refusing it unless it is exactly `expect` (kind, hub, command
/// and seq) and signed by that hub.
pub fn open_content(
    key: &ContentKey,
    expect: &ContentHeader,
    text: &str,
) -> Result<Vec<u8>, EnvelopeError> {
    let wire = ContentWire::parse(text)?;
    if wire.kind != expect.kind {
        return Err(EnvelopeError::WrongKind {
            expected: expect.kind.name(),
            found: wire.kind.name(),
        });
    }
    if wire.hub != expect.hub.to_string() {
        return Err(EnvelopeError::WrongSigner);
    }
    if wire.context != expect.context {
        return Err(EnvelopeError::WrongCommand {
            expected: expect.context.clone(),
            found: wire.context,
        });
    }
    if wire.seq != expect.seq {
        return Err(EnvelopeError::WrongSeq {
            expected: expect.seq,
            found: wire.seq,
        });
    }
    let ct = wire::decode("ct", &wire.ct)?;
    let aad = wire.header_bytes();
    verify(&expect.hub, &aad, &ct, &wire.sig)?;
    let nonce: [u8; 12] = decode_fixed("nonce", &wire.nonce)?;
    decrypt(key.as_bytes(), &nonce, &aad, &ct)
}
