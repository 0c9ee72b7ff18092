use serde_json::Value;

use super::*;

const VECTORS: &str = include_str!("../../proto/vectors/payload-v2.json");

fn request() -> pb::ExecuteRequest {
    pb::ExecuteRequest {
        command_id: "0b9f7a52-6a3c-4f3e-9c55-3f1c0d2e8a11".into(),
        source_device_id: String::new(),
        source_user_id: String::new(),
        agent_id: "main".into(),
        provider: Provider::OpenaiCodex.into(),
        content: "Write a haiku".into(),
        session_id: "s1".into(),
        channel_id: Some("c".into()),
        created_at: Some(ms_to_timestamp(1_800_000_000_000)),
        expires_at: Some(ms_to_timestamp(1_800_003_600_000)),
        model: Some("m".into()),
    }
}

#[test]
fn a_request_round_trips_through_its_payload() {
    let payload = CommandPayload::from_request(&request());
    let back = CommandPayload::from_json(&payload.to_json().unwrap()).unwrap();
    assert_eq!(back.into_request().unwrap(), request());
}

#[test]
fn empty_fields_are_left_out() {
    let request = pb::ExecuteRequest {
        command_id: "c".into(),
        content: "hi".into(),
        ..Default::default()
    };
    let json = CommandPayload::from_request(&request).to_json().unwrap();
    assert_eq!(json, br#"{"command_id":"c","content":"hi"}"#);
    let back = CommandPayload::from_json(&json)
        .unwrap()
        .into_request()
        .unwrap();
    assert_eq!(back, request);
}

#[test]
fn every_event_kind_round_trips() {
    let t = Some(ms_to_timestamp(1_800_000_000_123));
    let kinds = [
        Kind::Queued(pb::Queued { position: 3 }),
        Kind::Started(pb::Started {
            attempt: 1,
            ..Default::default()
        }),
        Kind::Started(pb::Started {
            attempt: 2,
            history_turns: 3,
            history_dropped: 1,
            note: "1 earlier turn left out".into(),
        }),
        Kind::Output(pb::Output {
            text: "α\n\"β\"".into(),
        }),
        Kind::Retrying(pb::Retrying {
            attempt: 2,
            delay_ms: 250,
            reason: "HTTP 529".into(),
        }),
        Kind::Finished(pb::Finished {
            status: CommandStatus::Completed.into(),
            error: String::new(),
            attempts: 1,
            executed_at: t,
        }),
        Kind::Finished(pb::Finished {
            status: CommandStatus::Expired.into(),
            error: "expired before it could start".into(),
            attempts: 0,
            executed_at: None,
        }),
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let event = pb::CommandEvent {
            command_id: "c".into(),
            seq: i as u64 + 1,
            time: t,
            kind: Some(kind),
        };
        let payload = EventPayload::from_event(&event).unwrap();
        let back = EventPayload::from_json(&payload.to_json().unwrap()).unwrap();
        assert_eq!(back.into_event("c").unwrap(), event);
    }
}

#[test]
fn a_started_event_names_its_history_only_when_there_is_one() {
    let plain = EventPayload {
        seq: 2,
        time_ms: None,
        kind: EventKind::started(1),
    };
    assert_eq!(
        plain.to_json().unwrap(),
        br#"{"seq":2,"started":{"attempt":1}}"#
    );
    let with_history = EventPayload {
        seq: 2,
        time_ms: None,
        kind: EventKind::Started {
            attempt: 1,
            history_turns: 2,
            history_dropped: 1,
            note: "n".into(),
        },
    };
    let json = with_history.to_json().unwrap();
    assert_eq!(
        json,
        br#"{"seq":2,"started":{"attempt":1,"history_turns":2,"history_dropped":1,"note":"n"}}"#
    );
    assert_eq!(EventPayload::from_json(&json).unwrap(), with_history);
}

#[test]
fn unknown_values_are_refused() {
    let bad_provider = br#"{"command_id":"c","content":"x","provider":"openai"}"#;
    let e = CommandPayload::from_json(bad_provider)
        .unwrap()
        .into_request()
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"malformed payload: provider "openai" is not anthropic, openai-codex or google-gemini"#
    );
    let unknown_field = br#"{"command_id":"c","content":"x","sudo":true}"#;
    assert!(
        CommandPayload::from_json(unknown_field)
            .unwrap_err()
            .to_string()
            .starts_with("malformed payload: unknown field `sudo`")
    );
    let bad_status = br#"{"seq":1,"finished":{"status":"done"}}"#;
    let e = EventPayload::from_json(bad_status)
        .unwrap()
        .into_event("c")
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"malformed payload: status "done" is not completed, failed, cancelled or expired"#
    );
    for no_kind in [&br#"{"seq":1}"#[..], br#"{"seq":1,"paused":{}}"#] {
        assert!(EventPayload::from_json(no_kind).is_err());
    }
}

/// The committed payloads parse, and serialize back to exactly the committed text; the
/// refusals are refused. The web spoke checks the same file.
#[test]
fn golden_vectors() {
    let file: Value = serde_json::from_str(VECTORS).unwrap();
    for v in file["commands"].as_array().unwrap() {
        let text = v["json"].as_str().unwrap();
        let payload = CommandPayload::from_json(text.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(payload.to_json().unwrap()).unwrap(),
            text,
            "{}",
            v["name"]
        );
        payload.into_request().unwrap();
    }
    for v in file["events"].as_array().unwrap() {
        let text = v["json"].as_str().unwrap();
        let payload = EventPayload::from_json(text.as_bytes()).unwrap();
        assert_eq!(
            String::from_utf8(payload.to_json().unwrap()).unwrap(),
            text,
            "{}",
            v["name"]
        );
        let event = payload.clone().into_event("c").unwrap();
        assert_eq!(EventPayload::from_event(&event).unwrap(), payload);
    }
    for v in file["pairing_requests"].as_array().unwrap() {
        let text = v["json"].as_str().unwrap();
        let payload = PairingRequest::from_json(text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(payload.to_json().unwrap()).unwrap(), text);
        assert!(
            !format!("{payload:?}").contains(&payload.secret),
            "the secret is redacted"
        );
    }
    for v in file["pairing_answers"].as_array().unwrap() {
        let text = v["json"].as_str().unwrap();
        let payload = PairingAnswer::from_json(text.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(payload.to_json().unwrap()).unwrap(), text);
    }
    for v in file["refusals"].as_array().unwrap() {
        let text = v["json"].as_str().unwrap().as_bytes();
        let refused = match v["type"].as_str().unwrap() {
            "command" => CommandPayload::from_json(text).and_then(|p| p.into_request().map(drop)),
            "event" => EventPayload::from_json(text).and_then(|p| p.into_event("c").map(drop)),
            "pairing_request" => PairingRequest::from_json(text).map(drop),
            "pairing_answer" => PairingAnswer::from_json(text).map(drop),
            other => panic!("type {other}"),
        };
        assert!(refused.is_err(), "{} was accepted", v["name"]);
    }
}

#[test]
fn an_event_with_two_kinds_or_an_unsafe_integer_is_refused() {
    for (json, why) in [
        (
            r#"{"seq":1,"output":{"text":"a"},"queued":{"position":1}}"#,
            "exactly one kind",
        ),
        (r#"{"seq":9007199254740992,"output":{"text":"a"}}"#, "2^53"),
        (
            r#"{"seq":1,"retrying":{"attempt":1,"delay_ms":9007199254740992,"reason":"r"}}"#,
            "2^53",
        ),
    ] {
        let err = EventPayload::from_json(json.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("malformed payload: ") && err.contains(why),
            "{json}: {err}"
        );
    }
    // The largest safe integer is still an integer.
    let ok = EventPayload::from_json(br#"{"seq":9007199254740991,"output":{"text":"a"}}"#).unwrap();
    assert_eq!(ok.seq, 9_007_199_254_740_991);
}
