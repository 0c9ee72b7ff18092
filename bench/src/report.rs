//! The bench's output: rows of a Markdown table and the keys of one JSON object, filled as
//! scenarios finish, and progress lines on stderr.

use serde_json::{Map, Value};

/// Rows of the Markdown table and the JSON object, filled as scenarios finish.
#[derive(Default)]
pub struct Report {
    rows: Vec<[String; 4]>,
    json: Map<String, Value>,
}

impl Report {
    pub fn row(&mut self, scenario: &str, measure: &str, value: String, target: &str) {
        self.rows
            .push([scenario.into(), measure.into(), value, target.into()]);
    }

    pub fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.into(), value);
    }

    /// The JSON object, for `--json`.
    pub fn into_json(self) -> Value {
        Value::Object(self.json)
    }

    #[allow(clippy::print_stdout)]
    pub fn print(&self) {
        println!("| scenario | measure | value | target |");
        println!("|---|---|---|---|");
        for [a, b, c, d] in &self.rows {
            println!("| {a} | {b} | {c} | {d} |");
        }
    }
}

/// The lowest and highest of some ratios, as "a–b".
pub fn spread(values: &[f64]) -> String {
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.2}–{hi:.2}")
}

pub fn met(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

#[allow(clippy::print_stderr)]
pub fn progress(line: &str) {
    eprintln!("helix-bench: {line}");
}
