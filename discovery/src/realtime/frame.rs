//! Phoenix v1 frames as the Realtime server sends them.

use serde_json::Value;

/// A Phoenix v1 frame as the server sends it.
#[derive(serde::Deserialize)]
pub(super) struct Frame {
    pub topic: String,
    pub event: String,
    #[serde(default)]
    pub payload: Value,
    #[serde(default, rename = "ref")]
    reference: Value,
}

impl Frame {
    pub fn ref_string(&self) -> Option<String> {
        match &self.reference {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// A short, token-free description of a refusal (`response.reason` or `message`).
pub(super) fn reply_reason(payload: &Value) -> String {
    let text = payload
        .pointer("/response/reason")
        .or_else(|| payload.get("message"))
        .and_then(Value::as_str)
        .or_else(|| payload.get("status").and_then(Value::as_str))
        .unwrap_or("no reason given");
    text.chars().take(200).collect()
}
