//! Phoenix channel frames in both serializer versions Realtime speaks: `vsn=1.0.0`, JSON objects
//! `{"topic", "event", "payload", "ref", "join_ref"}`, and `vsn=2.0.0` (realtime-js's default),
//! JSON arrays `[join_ref, ref, topic, event, payload]`.

use serde_json::{Value, json};

/// The serializer a socket asked for with its `vsn` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vsn {
    V1,
    V2,
}

impl Vsn {
    /// From the `vsn` query parameter; Phoenix's default when absent is 1.0.0.
    pub fn parse(vsn: Option<&str>) -> Option<Self> {
        match vsn {
            None | Some("1.0.0") => Some(Self::V1),
            Some("2.0.0") => Some(Self::V2),
            Some(_) => None,
        }
    }
}

/// One message either way.
#[derive(Debug, Clone, PartialEq)]
pub struct Msg {
    pub join_ref: Option<String>,
    pub reference: Option<String>,
    pub topic: String,
    pub event: String,
    pub payload: Value,
}

/// A ref as text: clients send strings, some send numbers.
fn ref_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn opt(v: Option<&String>) -> Value {
    v.map_or(Value::Null, |s| Value::String(s.clone()))
}

impl Msg {
    /// A reply to `to` (`phx_reply` on its topic with its refs).
    pub fn reply(to: &Msg, join_ref: Option<String>, status: &str, response: Value) -> Self {
        Self {
            join_ref,
            reference: to.reference.clone(),
            topic: to.topic.clone(),
            event: "phx_reply".into(),
            payload: json!({"status": status, "response": response}),
        }
    }

    /// A server push (no ref).
    pub fn push(join_ref: Option<String>, topic: &str, event: &str, payload: Value) -> Self {
        Self {
            join_ref,
            reference: None,
            topic: topic.to_owned(),
            event: event.to_owned(),
            payload,
        }
    }

    /// A text frame in `vsn`; `None` if it is not one.
    pub fn decode(vsn: Vsn, text: &str) -> Option<Self> {
        let value: Value = serde_json::from_str(text).ok()?;
        match vsn {
            Vsn::V1 => {
                let o = value.as_object()?;
                Some(Self {
                    join_ref: ref_text(o.get("join_ref")),
                    reference: ref_text(o.get("ref")),
                    topic: o.get("topic")?.as_str()?.to_owned(),
                    event: o.get("event")?.as_str()?.to_owned(),
                    payload: o.get("payload").cloned().unwrap_or_else(|| json!({})),
                })
            }
            Vsn::V2 => {
                let a = value.as_array()?;
                let [join_ref, reference, topic, event, payload] = a.as_slice() else {
                    return None;
                };
                Some(Self {
                    join_ref: ref_text(Some(join_ref)),
                    reference: ref_text(Some(reference)),
                    topic: topic.as_str()?.to_owned(),
                    event: event.as_str()?.to_owned(),
                    payload: payload.clone(),
                })
            }
        }
    }

    /// The text frame in `vsn`.
    pub fn encode(&self, vsn: Vsn) -> String {
        match vsn {
            Vsn::V1 => {
                let mut o = json!({
                    "topic": self.topic, "event": self.event, "payload": self.payload,
                    "ref": opt(self.reference.as_ref()),
                });
                if let Some(j) = &self.join_ref {
                    o["join_ref"] = json!(j);
                }
                o.to_string()
            }
            Vsn::V2 => json!([
                opt(self.join_ref.as_ref()),
                opt(self.reference.as_ref()),
                self.topic,
                self.event,
                self.payload
            ])
            .to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_versions_round_trip() {
        let v2 = r#"["3","4","realtime:x","phx_join",{"a":1}]"#;
        let msg = Msg::decode(Vsn::V2, v2).unwrap();
        assert_eq!(msg.join_ref.as_deref(), Some("3"));
        assert_eq!(msg.reference.as_deref(), Some("4"));
        assert_eq!(msg.event, "phx_join");
        assert_eq!(msg.encode(Vsn::V2), v2);
        let v1 = r#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":7}"#;
        let beat = Msg::decode(Vsn::V1, v1).unwrap();
        assert_eq!(
            (beat.reference.as_deref(), beat.join_ref.as_deref()),
            (Some("7"), None)
        );
        let reply = Msg::reply(&beat, None, "ok", json!({}));
        let out: Value = serde_json::from_str(&reply.encode(Vsn::V1)).unwrap();
        assert_eq!(
            out,
            json!({"topic": "phoenix", "event": "phx_reply", "ref": "7",
                   "payload": {"status": "ok", "response": {}}})
        );
        assert_eq!(Msg::decode(Vsn::V1, v2), None);
        assert_eq!(Msg::decode(Vsn::V2, v1), None);
        assert_eq!(
            Msg::push(None, "t", "system", json!({})).encode(Vsn::V2),
            r#"[null,null,"t","system",{}]"#
        );
    }

    #[test]
    fn versions_come_from_the_query() {
        assert_eq!(Vsn::parse(None), Some(Vsn::V1));
        assert_eq!(Vsn::parse(Some("2.0.0")), Some(Vsn::V2));
        assert_eq!(Vsn::parse(Some("3.0.0")), None);
    }
}
