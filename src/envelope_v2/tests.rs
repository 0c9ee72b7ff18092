//! Envelope v2: refusals, round trips, tampering, and the golden vectors in
//! `proto/vectors/envelope-v2.json` (which the web spoke's tests check too).

use iroh::{PublicKey, SecretKey};
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

const VECTORS: &str = include_str!("../../proto/vectors/envelope-v2.json");
const COMMAND: &str = "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11";
const OTHER_COMMAND: &str = "5d1c2b7e-0f4a-4e8b-9a61-7c3e2d1f0a99";

/// The refusal's text (what a person reads).
fn error_text<T: std::fmt::Debug>(result: Result<T, EnvelopeError>) -> String {
    result.unwrap_err().to_string()
}

fn key(seed: u8) -> SecretKey {
    SecretKey::from_bytes(&[seed; 32])
}

fn command_header(expires_at_ms: u64) -> SealedHeader {
    SealedHeader {
        kind: SealedKind::Command,
        context: COMMAND.into(),
        seq: 0,
        expires_at_ms,
    }
}

fn expect(hub: &SecretKey, kind: ContentKind, context: &str, seq: u64) -> ContentHeader {
    ContentHeader {
        kind,
        hub: hub.public(),
        context: context.into(),
        seq,
    }
}

#[test]
fn sealed_refusals_say_why() {
    let (device, hub, other_hub) = (key(1), key(2), key(3));
    let sealed = seal(&device, &hub.public(), &command_header(1000), b"prompt").unwrap();
    assert!(!sealed.contains("prompt"), "no plaintext in the envelope");
    let paired = |k: &PublicKey| *k == device.public();
    let opened = open_sealed(&hub, &sealed, 999, paired).unwrap();
    assert_eq!(opened.plaintext, b"prompt");
    assert_eq!(opened.header, command_header(1000));
    assert!(matches!(
        open_sealed(&other_hub, &sealed, 999, paired),
        Err(EnvelopeError::NotForUs)
    ));
    assert!(matches!(
        open_sealed(&hub, &sealed, 1000, paired),
        Err(EnvelopeError::Expired)
    ));
    assert!(matches!(
        open_sealed(&hub, &sealed, 999, |_| false),
        Err(EnvelopeError::UnknownSender(_))
    ));
    let mut wire: Value = serde_json::from_str(&sealed).unwrap();
    wire["expires_at_ms"] = 5000.into();
    assert!(matches!(
        open_sealed(&hub, &wire.to_string(), 1500, paired),
        Err(EnvelopeError::BadSignature)
    ));
    let mut wire: Value = serde_json::from_str(&sealed).unwrap();
    wire["v"] = 3.into();
    assert!(matches!(
        open_sealed(&hub, &wire.to_string(), 0, paired),
        Err(EnvelopeError::Version(3))
    ));
    assert!(matches!(
        open_sealed(&hub, &"x".repeat(MAX_ENVELOPE + 1), 0, paired),
        Err(EnvelopeError::TooLarge(n)) if n == MAX_ENVELOPE + 1
    ));
}

#[test]
fn a_zero_expiry_never_expires() {
    let (device, hub) = (key(1), key(2));
    let sealed = seal(&device, &hub.public(), &command_header(0), b"p").unwrap();
    assert!(open_sealed(&hub, &sealed, u64::from(u32::MAX) * 1000, |_| true).is_ok());
}

#[test]
fn numbers_over_2_pow_53_are_refused_both_ways() {
    let (device, hub) = (key(1), key(2));
    let big = SealedHeader {
        seq: MAX_SAFE_INTEGER + 1,
        ..command_header(0)
    };
    assert!(matches!(
        seal(&device, &hub.public(), &big, b"p"),
        Err(EnvelopeError::Malformed(_))
    ));
    let sealed = seal(&device, &hub.public(), &command_header(0), b"p").unwrap();
    let mut wire: Value = serde_json::from_str(&sealed).unwrap();
    wire["seq"] = (MAX_SAFE_INTEGER + 1).into();
    assert_eq!(
        error_text(open_sealed(&hub, &wire.to_string(), 0, |_| true)),
        "malformed envelope: seq is over 2^53 - 1"
    );
}

#[test]
fn content_keys_unwrap_only_for_their_device_command_and_hub() {
    let (hub, device, other_device, other_hub) = (key(10), key(11), key(12), key(13));
    let content = ContentKey::generate();
    let wrapped = wrap_content_key(
        &hub,
        &device.public(),
        COMMAND,
        &content,
        &SealRandom::fresh(),
    )
    .unwrap();
    assert_eq!(
        unwrap_content_key(&device, &hub.public(), COMMAND, &wrapped).unwrap(),
        content
    );
    assert!(matches!(
        unwrap_content_key(&other_device, &hub.public(), COMMAND, &wrapped),
        Err(EnvelopeError::NotForUs)
    ));
    assert!(matches!(
        unwrap_content_key(&device, &hub.public(), OTHER_COMMAND, &wrapped),
        Err(EnvelopeError::WrongCommand { .. })
    ));
    assert!(matches!(
        unwrap_content_key(&device, &other_hub.public(), COMMAND, &wrapped),
        Err(EnvelopeError::UnknownSender(_))
    ));
    // A command sealed by the hub is not a content key.
    let command = seal(&hub, &device.public(), &command_header(0), &[7; 32]).unwrap();
    assert_eq!(
        error_text(unwrap_content_key(
            &device,
            &hub.public(),
            COMMAND,
            &command
        )),
        "spliced envelope: kind command where kind content_key belongs"
    );
    assert_eq!(format!("{content:?}"), "ContentKey(<redacted>)");
}

#[test]
fn content_is_bound_to_kind_hub_command_and_seq() {
    let (hub, other_hub) = (key(20), key(21));
    let k = ContentKey::generate();
    let event = seal_content(&hub, &k, ContentKind::Event, COMMAND, 3, b"out").unwrap();
    assert_eq!(
        open_content(&k, &expect(&hub, ContentKind::Event, COMMAND, 3), &event).unwrap(),
        b"out"
    );
    let refusals = [
        (
            expect(&hub, ContentKind::Event, COMMAND, 4),
            "spliced envelope: it carries seq 3 where seq 4 belongs",
        ),
        (
            expect(&hub, ContentKind::Event, OTHER_COMMAND, 3),
            "spliced envelope: it belongs to command 0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11, not 5d1c2b7e-0f4a-4e8b-9a61-7c3e2d1f0a99",
        ),
        (
            expect(&hub, ContentKind::Prompt, COMMAND, 3),
            "spliced envelope: kind event where kind prompt belongs",
        ),
        (
            expect(&other_hub, ContentKind::Event, COMMAND, 3),
            "spliced envelope: it names another hub as its signer",
        ),
    ];
    for (expected, message) in refusals {
        assert_eq!(
            open_content(&k, &expected, &event).unwrap_err().to_string(),
            message
        );
    }
    // Another hub's signature over a header that names this hub: forged.
    let mut wire: Value = serde_json::from_str(&event).unwrap();
    let forged = seal_content(&other_hub, &k, ContentKind::Event, COMMAND, 3, b"evil").unwrap();
    let forged: Value = serde_json::from_str(&forged).unwrap();
    wire["ct"] = forged["ct"].clone();
    wire["nonce"] = forged["nonce"].clone();
    assert!(matches!(
        open_content(
            &k,
            &expect(&hub, ContentKind::Event, COMMAND, 3),
            &wire.to_string()
        ),
        Err(EnvelopeError::BadSignature)
    ));
    // The right signature under the wrong key does not decrypt.
    assert!(matches!(
        open_content(
            &ContentKey::generate(),
            &expect(&hub, ContentKind::Event, COMMAND, 3),
            &event
        ),
        Err(EnvelopeError::Undecryptable)
    ));
}

proptest! {
    #[test]
    fn sealed_round_trips_any_plaintext(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), seq in 0..=MAX_SAFE_INTEGER) {
        let (device, hub) = (key(4), key(5));
        let h = SealedHeader { seq, ..command_header(0) };
        let sealed = seal(&device, &hub.public(), &h, &plaintext).unwrap();
        let opened = open_sealed(&hub, &sealed, 0, |k| *k == device.public()).unwrap();
        prop_assert_eq!(opened.plaintext, plaintext);
        prop_assert_eq!(opened.header, h);
        prop_assert_eq!(opened.sender, device.public());
    }

    #[test]
    fn content_round_trips_any_plaintext(plaintext in proptest::collection::vec(any::<u8>(), 0..2048), seq in 1..=MAX_SAFE_INTEGER) {
        let hub = key(6);
        let k = ContentKey::generate();
        let sealed = seal_content(&hub, &k, ContentKind::Event, COMMAND, seq, &plaintext).unwrap();
        prop_assert_eq!(open_content(&k, &expect(&hub, ContentKind::Event, COMMAND, seq), &sealed).unwrap(), plaintext);
    }

    /// Changing any one character never yields a different accepted message.
    #[test]
    fn any_tampering_is_refused(index in any::<prop::sample::Index>(), replacement in "[A-Za-z0-9_-]") {
        let (device, hub) = (key(6), key(7));
        let k = ContentKey::generate();
        let sealed = seal(&device, &hub.public(), &command_header(0), b"the prompt").unwrap();
        let content = seal_content(&hub, &k, ContentKind::Event, COMMAND, 1, b"the output").unwrap();
        for (text, plain) in [(&sealed, &b"the prompt"[..]), (&content, &b"the output"[..])] {
            let i = index.index(text.len());
            let mut tampered = text.clone();
            tampered.replace_range(i..i + 1, &replacement);
            if tampered == *text {
                continue;
            }
            if let Ok(opened) = open_sealed(&hub, &tampered, 0, |k| *k == device.public()) {
                prop_assert_eq!(&opened.plaintext[..], plain);
            }
            if let Ok(opened) = open_content(&k, &expect(&hub, ContentKind::Event, COMMAND, 1), &tampered) {
                prop_assert_eq!(&opened[..], plain);
            }
        }
    }

    #[test]
    fn garbage_never_panics(text in ".{0,300}") {
        let _ = open_sealed(&key(8), &text, 0, |_| true);
        let _ = open_content(&ContentKey::from_bytes([1; 32]), &expect(&key(8), ContentKind::Event, COMMAND, 1), &text);
    }
}

// ---------------------------------------------------------------- golden vectors

fn hex32(v: &Value) -> [u8; 32] {
    hex_bytes(v).try_into().unwrap()
}

fn hex_bytes(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sealed_kind(name: &str) -> SealedKind {
    serde_json::from_value(json!(name)).unwrap()
}

fn content_kind(name: &str) -> ContentKind {
    serde_json::from_value(json!(name)).unwrap()
}

/// What each vector's inputs produce today, in the file's shape.
fn vectors_now(file: &Value) -> Value {
    let keys = &file["keys"];
    let secret = |name: &str| SecretKey::from_bytes(&hex32(&keys[name]["secret"]));
    let mut out = file.clone();
    for v in out["sealed"].as_array_mut().unwrap() {
        let random = SealRandom {
            ephemeral: hex32(&v["ephemeral_secret"]),
            nonce: hex_bytes(&v["nonce"]).try_into().unwrap(),
        };
        let header = SealedHeader {
            kind: sealed_kind(v["kind"].as_str().unwrap()),
            context: v["context"].as_str().unwrap().into(),
            seq: v["seq"].as_u64().unwrap(),
            expires_at_ms: v["expires_at_ms"].as_u64().unwrap(),
        };
        let sender = secret(v["sender"].as_str().unwrap());
        let recipient = secret(v["recipient"].as_str().unwrap());
        let envelope = seal_with(
            &sender,
            &recipient.public(),
            &header,
            &hex_bytes(&v["plaintext"]),
            &random,
        )
        .unwrap();
        v["envelope"] = json!(envelope);
    }
    for v in out["content"].as_array_mut().unwrap() {
        let hub = secret(v["hub"].as_str().unwrap());
        let envelope = seal_content_with(
            &hub,
            &ContentKey::from_bytes(hex32(&v["content_key"])),
            content_kind(v["kind"].as_str().unwrap()),
            v["context"].as_str().unwrap(),
            v["seq"].as_u64().unwrap(),
            &hex_bytes(&v["plaintext"]),
            &hex_bytes(&v["nonce"]).try_into().unwrap(),
        )
        .unwrap();
        v["envelope"] = json!(envelope);
    }
    let envelope_of = |name: &str| -> Value {
        let all = out["sealed"].as_array().unwrap().iter();
        let v = all
            .chain(out["content"].as_array().unwrap())
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no vector {name}"));
        serde_json::from_str(v["envelope"].as_str().unwrap()).unwrap()
    };
    let refusals: Vec<Value> = out["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut envelope = envelope_of(r["envelope_of"].as_str().unwrap());
            if let Some(splice) = r.get("splice") {
                let field = splice["field"].as_str().unwrap();
                let from = envelope_of(splice["from"].as_str().unwrap());
                envelope[field] = from[field].clone();
            }
            let mut r = r.clone();
            r["envelope"] = json!(envelope.to_string());
            r
        })
        .collect();
    out["refusals"] = json!(refusals);
    for k in out["keys"].as_object_mut().unwrap().values_mut() {
        let secret = SecretKey::from_bytes(&hex32(&k["secret"]));
        k["public"] = json!(secret.public().to_string());
    }
    out
}

/// Sealing the vectors' inputs gives exactly the committed envelopes; opening them gives the
/// plaintexts; the refusal cases fail with the committed messages. `HELIX_WRITE_VECTORS=1`
/// rewrites the outputs (only when the format changes on purpose).
#[test]
fn golden_vectors() {
    let file: Value = serde_json::from_str(VECTORS).unwrap();
    let now = vectors_now(&file);
    if std::env::var_os("HELIX_WRITE_VECTORS").is_some() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/proto/vectors/envelope-v2.json"
        );
        let text = serde_json::to_string_pretty(&now).unwrap() + "\n";
        std::fs::write(path, text).unwrap();
        return;
    }
    assert_eq!(
        now, file,
        "the committed vectors differ from what the code produces"
    );

    let keys = &file["keys"];
    let secret = |name: &str| SecretKey::from_bytes(&hex32(&keys[name]["secret"]));
    for v in file["sealed"].as_array().unwrap() {
        let recipient = secret(v["recipient"].as_str().unwrap());
        let sender = secret(v["sender"].as_str().unwrap());
        let opened = open_sealed(&recipient, v["envelope"].as_str().unwrap(), 0, |k| {
            *k == sender.public()
        })
        .unwrap();
        assert_eq!(hex(&opened.plaintext), v["plaintext"].as_str().unwrap());
    }
    for v in file["content"].as_array().unwrap() {
        let hub = secret(v["hub"].as_str().unwrap());
        let expected = expect(
            &hub,
            content_kind(v["kind"].as_str().unwrap()),
            v["context"].as_str().unwrap(),
            v["seq"].as_u64().unwrap(),
        );
        let k = ContentKey::from_bytes(hex32(&v["content_key"]));
        let plain = open_content(&k, &expected, v["envelope"].as_str().unwrap()).unwrap();
        assert_eq!(hex(&plain), v["plaintext"].as_str().unwrap());
    }
    for r in file["refusals"].as_array().unwrap() {
        let envelope = r["envelope"].as_str().unwrap();
        let error = match r["open"].as_str().unwrap() {
            "sealed" => {
                let recipient = secret(r["recipient"].as_str().unwrap());
                let sender = secret(r["sender"].as_str().unwrap());
                open_sealed(&recipient, envelope, r["now_ms"].as_u64().unwrap(), |k| {
                    *k == sender.public()
                })
                .unwrap_err()
            }
            "content" => {
                let hub = secret(r["hub"].as_str().unwrap());
                let expected = expect(
                    &hub,
                    content_kind(r["kind"].as_str().unwrap()),
                    r["context"].as_str().unwrap(),
                    r["seq"].as_u64().unwrap(),
                );
                let k = ContentKey::from_bytes(hex32(&r["content_key"]));
                open_content(&k, &expected, envelope).unwrap_err()
            }
            other => panic!("unknown refusal kind {other}"),
        };
        assert_eq!(
            error.to_string(),
            r["error"].as_str().unwrap(),
            "{}",
            r["name"]
        );
    }
}
