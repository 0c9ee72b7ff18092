//! Every way an event row can differ from the event a device expects is refused, by name.

use helix_mesh::{
    cloud_payload::{CommandPayload, EventKind, EventPayload},
    envelope_v2::{
        self, ContentKey, ContentKind, EnvelopeError, SealRandom, seal_content, wrap_content_key,
    },
    pb::command_event::Kind,
};
use iroh::SecretKey;

use super::*;

const COMMAND: &str = "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11";
const OTHER: &str = "7d3e2c10-1111-4f3e-9c55-3f1c0d2e8a11";

struct World {
    hub: SecretKey,
    device: SecretKey,
    key: ContentKey,
}

fn world() -> World {
    World {
        hub: SecretKey::generate(),
        device: SecretKey::generate(),
        key: ContentKey::generate(),
    }
}

fn output(seq: u64, text: &str) -> Vec<u8> {
    EventPayload {
        seq,
        time_ms: Some(1_700_000_000_000),
        kind: EventKind::Output { text: text.into() },
    }
    .to_json()
    .unwrap()
}

impl World {
    fn opener(&self) -> Opener {
        let wrapped = wrap_content_key(
            &self.hub,
            &self.device.public(),
            COMMAND,
            &self.key,
            &SealRandom::fresh(),
        )
        .unwrap();
        unwrap_key(&self.device, self.hub.public(), COMMAND, &wrapped).unwrap()
    }

    fn event(&self, command: &str, seq: u64, text: &str) -> EventRow {
        EventRow {
            seq,
            envelope: seal_content(
                &self.hub,
                &self.key,
                ContentKind::Event,
                command,
                seq,
                &output(seq, text),
            )
            .unwrap(),
        }
    }
}

fn refusal(result: Result<pb::CommandEvent, CloudRouteError>) -> (u64, String) {
    match result {
        Err(CloudRouteError::RefusedEvent {
            seq,
            command_id,
            why,
        }) => {
            assert_eq!(command_id, COMMAND);
            (seq, why.to_string())
        }
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn the_event_expected_next_opens_as_this_commands() {
    let w = world();
    let event = w.opener().event(&w.event(COMMAND, 1, "hello"), 1).unwrap();
    assert_eq!((event.command_id.as_str(), event.seq), (COMMAND, 1));
    assert!(matches!(event.kind, Some(Kind::Output(o)) if o.text == "hello"));
}

#[test]
fn an_event_of_another_command_or_seq_is_refused() {
    let w = world();
    let open = w.opener();
    assert_eq!(
        refusal(open.event(&w.event(OTHER, 1, "foreign"), 1)),
        (
            1,
            format!("spliced envelope: it belongs to command {OTHER}, not {COMMAND}")
        )
    );
    // Event 3's envelope stored as event 2 (reordered rows).
    let mut moved = w.event(COMMAND, 3, "later");
    moved.seq = 2;
    assert_eq!(
        refusal(open.event(&moved, 2)),
        (
            2,
            "spliced envelope: it carries seq 3 where seq 2 belongs".into()
        )
    );
    assert_eq!(
        refusal(open.event(&w.event(COMMAND, 4, "gap"), 3)),
        (
            3,
            "it is missing from the cloud (the next event stored is 4)".into()
        )
    );
    assert_eq!(
        refusal(open.event(&w.event(COMMAND, 2, "again"), 3)),
        (3, "the cloud returned event 2 again in its place".into())
    );
}

#[test]
fn a_prompt_another_signer_or_a_lying_payload_is_refused() {
    let w = world();
    let open = w.opener();
    let prompt = seal_content(
        &w.hub,
        &w.key,
        ContentKind::Prompt,
        COMMAND,
        1,
        &output(1, "x"),
    )
    .unwrap();
    let row = |envelope: String| EventRow { seq: 1, envelope };
    assert_eq!(
        refusal(open.event(&row(prompt), 1)).1,
        "spliced envelope: kind prompt where kind event belongs"
    );
    // Another key signs, naming itself: not the paired hub.
    let forger = SecretKey::generate();
    let forged = seal_content(
        &forger,
        &w.key,
        ContentKind::Event,
        COMMAND,
        1,
        &output(1, "x"),
    )
    .unwrap();
    assert_eq!(
        refusal(open.event(&row(forged.clone()), 1)).1,
        "spliced envelope: it names another hub as its signer"
    );
    // … or naming the hub: the signature does not hold.
    let mut wire: serde_json::Value = serde_json::from_str(&forged).unwrap();
    wire["hub"] = w.hub.public().to_string().into();
    assert_eq!(
        refusal(open.event(&row(wire.to_string()), 1)).1,
        EnvelopeError::BadSignature.to_string()
    );
    // Signed by the hub for seq 1, but the event inside says 2.
    let lying = seal_content(
        &w.hub,
        &w.key,
        ContentKind::Event,
        COMMAND,
        1,
        &output(2, "x"),
    )
    .unwrap();
    assert_eq!(
        refusal(open.event(&row(lying), 1)).1,
        "the event inside says seq 2"
    );
    let not_json =
        seal_content(&w.hub, &w.key, ContentKind::Event, COMMAND, 1, b"not json").unwrap();
    assert!(
        refusal(open.event(&row(not_json), 1))
            .1
            .starts_with("malformed payload")
    );
}

#[test]
fn a_key_for_another_command_or_from_another_hub_is_refused() {
    let w = world();
    let for_other = wrap_content_key(
        &w.hub,
        &w.device.public(),
        OTHER,
        &w.key,
        &SealRandom::fresh(),
    )
    .unwrap();
    let err = unwrap_key(&w.device, w.hub.public(), COMMAND, &for_other)
        .err()
        .unwrap();
    assert_eq!(
        err.to_string(),
        format!(
            "cloud route: refused the content key of {COMMAND}: spliced envelope: it belongs to command {OTHER}, not {COMMAND}"
        )
    );
    let from_other = wrap_content_key(
        &SecretKey::generate(),
        &w.device.public(),
        COMMAND,
        &w.key,
        &SealRandom::fresh(),
    )
    .unwrap();
    assert!(matches!(
        unwrap_key(&w.device, w.hub.public(), COMMAND, &from_other),
        Err(CloudRouteError::RefusedKey { .. })
    ));
}

#[test]
fn the_prompt_opens_as_the_command_the_hub_accepted() {
    let w = world();
    let open = w.opener();
    let payload = CommandPayload {
        command_id: COMMAND.into(),
        content: "say hi".into(),
        provider: Some("anthropic".into()),
        agent_id: Some("main".into()),
        session_id: None,
        channel_id: None,
        model: None,
        source_device_id: Some(w.device.public().to_string()),
        created_at_ms: Some(1),
        expires_at_ms: Some(2),
    };
    let sealed = |p: &CommandPayload, seq| {
        envelope_v2::seal_content(
            &w.hub,
            &w.key,
            ContentKind::Prompt,
            COMMAND,
            seq,
            &p.to_json().unwrap(),
        )
        .unwrap()
    };
    assert_eq!(open.prompt(&sealed(&payload, 0)).unwrap(), payload);
    assert!(open.prompt(&sealed(&payload, 1)).is_err());
    let other = CommandPayload {
        command_id: OTHER.into(),
        ..payload.clone()
    };
    assert!(matches!(
        open.prompt(&sealed(&other, 0)),
        Err(Refusal::Envelope(EnvelopeError::WrongCommand { .. }))
    ));
}
