//! `postgres_changes` subscriptions and the changes they match: a binding is an event kind
//! (`*`, `INSERT`, `UPDATE`, `DELETE`), a schema, an optional table and an optional filter
//! `column=op.value` (several joined by commas, all must hold; `eq`, `neq`, `lt`, `lte`, `gt`,
//! `gte`, `in.(a,b)`, each negatable with `not.`), as Realtime takes them.

use std::collections::HashMap;

use serde_json::Value;

/// One row change, as the capture trigger (`sql/realtime.sql`) reports it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Change {
    pub schema: String,
    pub table: String,
    /// `INSERT`, `UPDATE` or `DELETE`.
    #[serde(rename = "type")]
    pub kind: String,
    pub commit_timestamp: String,
    /// The row's `user_id`: only that user's subscribers hear of it (Realtime's RLS check).
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub record: Option<Value>,
    #[serde(default)]
    pub old_record: Option<Value>,
    #[serde(default)]
    pub errors: Value,
}

/// The tables in the `supabase_realtime` publication, with their columns as Realtime lists
/// them (`[{"name", "type"}]`, the type as `pg_type.typname`).
#[derive(Debug, Default, Clone)]
pub struct Tables {
    pub columns: HashMap<(String, String), Vec<Value>>,
}

impl Tables {
    fn published(&self, schema: &str, table: Option<&str>) -> bool {
        self.columns
            .keys()
            .any(|(s, t)| (schema == "*" || s == schema) && table.is_none_or(|name| name == t))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    All,
    Insert,
    Update,
    Delete,
}

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    Neq(String),
    Lt(String),
    Lte(String),
    Gt(String),
    Gte(String),
    In(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
struct Condition {
    column: String,
    negated: bool,
    op: Op,
}

/// A subscription of one channel, with the id the join's reply gave it.
#[derive(Debug, Clone)]
pub struct Binding {
    pub id: u64,
    event: Event,
    schema: String,
    /// `None` for every published table of the schema.
    table: Option<String>,
    conditions: Vec<Condition>,
}

/// Why a subscription cannot be served; the text goes into the `system` error message.
pub type BindingError = String;

impl Binding {
    /// Parses one entry of the join's `config.postgres_changes`.
    pub fn parse(id: u64, spec: &Value, tables: &Tables) -> Result<Self, BindingError> {
        let field = |name: &str| spec.get(name).and_then(Value::as_str);
        let event = match field("event").map(str::to_ascii_uppercase).as_deref() {
            Some("*") => Event::All,
            Some("INSERT") => Event::Insert,
            Some("UPDATE") => Event::Update,
            Some("DELETE") => Event::Delete,
            other => {
                return Err(format!(
                    "unknown event {other:?} (*, INSERT, UPDATE, DELETE)"
                ));
            }
        };
        let schema = field("schema")
            .ok_or("a subscription needs a schema")?
            .to_owned();
        let table = field("table").filter(|t| *t != "*").map(str::to_owned);
        if !tables.published(&schema, table.as_deref()) {
            return Err(format!(
                "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for the given connect parameters: [schema: {schema}, table: {}]",
                table.as_deref().unwrap_or("*")
            ));
        }
        let conditions = match field("filter").filter(|f| !f.is_empty()) {
            Some(filter) => parse_filter(filter)?,
            None => Vec::new(),
        };
        Ok(Self {
            id,
            event,
            schema,
            table,
            conditions,
        })
    }

    /// Whether `change` is this subscription's.
    pub fn matches(&self, change: &Change) -> bool {
        let kind = match change.kind.as_str() {
            "INSERT" => Event::Insert,
            "UPDATE" => Event::Update,
            "DELETE" => Event::Delete,
            _ => return false,
        };
        if self.event != Event::All && self.event != kind {
            return false;
        }
        if self.schema != "*" && self.schema != change.schema {
            return false;
        }
        if self.table.as_ref().is_some_and(|t| *t != change.table) {
            return false;
        }
        // A delete has only the old row's key to filter on.
        let row = match kind {
            Event::Delete => change.old_record.as_ref(),
            _ => change.record.as_ref(),
        };
        self.conditions.iter().all(|c| c.holds(row))
    }
}

impl Condition {
    fn holds(&self, row: Option<&Value>) -> bool {
        let Some(value) = row.and_then(|r| r.get(&self.column)).and_then(cell_text) else {
            return false;
        };
        let ok = match &self.op {
            Op::Eq(v) => value == *v,
            Op::Neq(v) => value != *v,
            Op::Lt(v) => compare(&value, v).is_lt(),
            Op::Lte(v) => compare(&value, v).is_le(),
            Op::Gt(v) => compare(&value, v).is_gt(),
            Op::Gte(v) => compare(&value, v).is_ge(),
            Op::In(vs) => vs.contains(&value),
        };
        ok != self.negated
    }
}

/// A cell as text (what filters compare); `None` for null.
fn cell_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Numbers compare as numbers, anything else as text.
fn compare(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y),
        _ => a.cmp(b),
    }
}

/// Splits on `sep` outside double quotes and parentheses.
fn split_top(text: &str, sep: char) -> Vec<&str> {
    let (mut parts, mut start, mut depth, mut quoted) = (Vec::new(), 0, 0u32, false);
    for (i, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '(' if !quoted => depth += 1,
            ')' if !quoted => depth = depth.saturating_sub(1),
            c if c == sep && !quoted && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

fn unquote(v: &str) -> String {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
        .to_owned()
}

fn parse_filter(filter: &str) -> Result<Vec<Condition>, BindingError> {
    let bad = |why: &str| format!("Error parsing `filter` params: {filter:?} ({why})");
    split_top(filter, ',')
        .into_iter()
        .map(|part| {
            let (column, rest) = part.split_once('=').ok_or_else(|| bad("no ="))?;
            let (negated, rest) = match rest.strip_prefix("not.") {
                Some(r) => (true, r),
                None => (false, rest),
            };
            let (op, value) = rest.split_once('.').ok_or_else(|| bad("no operator"))?;
            let op = match op {
                "eq" => Op::Eq(unquote(value)),
                "neq" => Op::Neq(unquote(value)),
                "lt" => Op::Lt(unquote(value)),
                "lte" => Op::Lte(unquote(value)),
                "gt" => Op::Gt(unquote(value)),
                "gte" => Op::Gte(unquote(value)),
                "in" => {
                    let inner = value
                        .strip_prefix('(')
                        .and_then(|v| v.strip_suffix(')'))
                        .ok_or_else(|| bad("in takes (a,b,…)"))?;
                    Op::In(split_top(inner, ',').into_iter().map(unquote).collect())
                }
                _ => return Err(bad("unsupported operator")),
            };
            if column.is_empty() {
                return Err(bad("no column"));
            }
            Ok(Condition {
                column: column.to_owned(),
                negated,
                op,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn tables() -> Tables {
        let mut t = Tables::default();
        t.columns
            .insert(("public".into(), "cloud_commands".into()), vec![]);
        t.columns
            .insert(("public".into(), "cloud_pairings".into()), vec![]);
        t
    }

    fn change(kind: &str, record: Value) -> Change {
        Change {
            schema: "public".into(),
            table: "cloud_commands".into(),
            kind: kind.into(),
            commit_timestamp: "t".into(),
            user_id: None,
            record: Some(record),
            old_record: Some(json!({"command_id": "c1"})),
            errors: Value::Null,
        }
    }

    fn binding(spec: Value) -> Result<Binding, BindingError> {
        Binding::parse(1, &spec, &tables())
    }

    #[test]
    fn events_tables_and_eq_filters_match() {
        let b = binding(json!({"event": "INSERT", "schema": "public", "table": "cloud_commands", "filter": "hub_id=eq.h1"})).unwrap();
        assert!(b.matches(&change("INSERT", json!({"hub_id": "h1"}))));
        assert!(!b.matches(&change("INSERT", json!({"hub_id": "h2"}))));
        assert!(!b.matches(&change("UPDATE", json!({"hub_id": "h1"}))));
        assert!(!b.matches(&change("INSERT", json!({"other": "h1"}))));
        let all = binding(json!({"event": "*", "schema": "public"})).unwrap();
        assert!(all.matches(&change("DELETE", json!({}))));
        let delete = binding(json!({"event": "DELETE", "schema": "public", "table": "cloud_commands", "filter": "command_id=eq.c1"})).unwrap();
        assert!(delete.matches(&change("DELETE", json!({}))));
    }

    #[test]
    fn other_operators_and_several_conditions() {
        let b = binding(
            json!({"event": "*", "schema": "public", "table": "cloud_commands",
            "filter": "last_seq=gt.2,status=in.(executing,\"a,b\"),reason=not.eq.x"}),
        )
        .unwrap();
        assert!(b.matches(&change(
            "UPDATE",
            json!({"last_seq": 10, "status": "a,b", "reason": "y"})
        )));
        assert!(!b.matches(&change(
            "UPDATE",
            json!({"last_seq": 2, "status": "executing", "reason": "y"})
        )));
        assert!(!b.matches(&change(
            "UPDATE",
            json!({"last_seq": 3, "status": "executing", "reason": "x"})
        )));
    }

    #[test]
    fn bad_subscriptions_say_why() {
        assert!(
            binding(json!({"event": "INSERT", "schema": "public", "table": "nope"}))
                .unwrap_err()
                .starts_with("Unable to subscribe")
        );
        assert!(binding(json!({"event": "TRUNCATE", "schema": "public"})).is_err());
        assert!(
            binding(json!({"event": "*", "schema": "public", "filter": "a=like.x"}))
                .unwrap_err()
                .contains("unsupported operator")
        );
    }
}
