//! Server-sent events (the `text/event-stream` format from the HTML standard), parsed
//! incrementally from arbitrary byte chunks.
//!
//! Lines end in `\n`, `\r\n` or `\r`; `data:` lines of one event are joined with `\n`; a blank
//! line dispatches the event; lines starting with `:` are comments; one space after the colon
//! is dropped. An event without data is not dispatched. Bytes that are not UTF-8 are replaced
//! rather than failing the whole stream.

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty means the default type `message`.
    pub event: String,
    pub data: String,
    pub id: Option<String>,
}

/// Most bytes kept for one unfinished line. A peer that never ends a line cannot make the hub
/// buffer without bound.
pub const MAX_LINE_BYTES: usize = 8 << 20;

/// A line longer than [`MAX_LINE_BYTES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event stream line longer than {MAX_LINE_BYTES} bytes")]
pub struct LineTooLong;

/// Incremental parser: feed it chunks, take out whole events.
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    /// The previous chunk ended in `\r`: a `\n` at the start of the next one belongs to it.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `chunk`, appending every event it completes to `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<SseEvent>) -> Result<(), LineTooLong> {
        if chunk.is_empty() {
            return Ok(());
        }
        let mut rest = chunk;
        if self.after_cr {
            self.after_cr = false;
            if let Some(b'\n') = rest.first() {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.line.extend_from_slice(&rest[..pos]);
            let was_cr = rest[pos] == b'\r';
            rest = &rest[pos + 1..];
            if was_cr {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            let line = std::mem::take(&mut self.line);
            self.process_line(&line, out);
        }
        if self.line.len() + rest.len() > MAX_LINE_BYTES {
            return Err(LineTooLong);
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn process_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(SseEvent {
                    event: std::mem::take(&mut self.event),
                    data: std::mem::take(&mut self.data),
                    id: self.id.clone(),
                });
            } else {
                self.event.clear();
            }
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse_all(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut p = SseParser::new();
        let mut out = Vec::new();
        for c in chunks {
            p.feed(c, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn parses_anthropic_style_stream() {
        let stream = b"event: message_start\ndata: {\"a\":1}\n\n: comment\nevent: ping\ndata: {}\n\nevent: content_block_delta\ndata: {\"t\":\"hi\"}\n\n";
        let events = parse_all(&[stream]);
        assert_eq!(events.len(), 3);
        assert_eq!(events[0].event, "message_start");
        assert_eq!(events[1].event, "ping");
        assert_eq!(events[2].data, "{\"t\":\"hi\"}");
    }

    #[test]
    fn multi_line_data_crlf_and_no_space() {
        let events = parse_all(&[b"data:a\r\ndata: b\r\n\r\ndata\r\rid: 7\ndata: x\n\n"]);
        assert_eq!(events[0].data, "a\nb");
        assert_eq!(events[1].data, "");
        assert_eq!(events[2].id.as_deref(), Some("7"));
        assert_eq!(events[2].data, "x");
    }

    #[test]
    fn event_without_data_is_dropped_and_its_type_forgotten() {
        let events = parse_all(&[b"event: lonely\n\ndata: d\n\n"]);
        assert_eq!(
            events,
            vec![SseEvent {
                event: String::new(),
                data: "d".into(),
                id: None
            }]
        );
    }

    #[test]
    fn unterminated_event_is_not_dispatched() {
        assert!(parse_all(&[b"data: partial\n"]).is_empty());
    }

    #[test]
    fn overlong_line_is_refused() {
        let mut p = SseParser::new();
        let big = vec![b'x'; MAX_LINE_BYTES + 1];
        assert_eq!(p.feed(&big, &mut Vec::new()), Err(LineTooLong));
    }

    fn encode(events: &[(String, String)], crlf: bool) -> Vec<u8> {
        let nl = if crlf { "\r\n" } else { "\n" };
        let mut s = String::new();
        for (event, data) in events {
            s.push_str(&format!("event: {event}{nl}"));
            for line in data.split('\n') {
                s.push_str(&format!("data: {line}{nl}"));
            }
            s.push_str(nl);
        }
        s.into_bytes()
    }

    proptest! {
        /// Any split of a valid stream into chunks parses to the same events.
        #[test]
        fn chunking_never_changes_the_events(
            events in proptest::collection::vec(("[a-z_]{1,12}", "[^\r\n]{0,20}(\n[^\r\n]{0,20}){0,2}"), 0..8),
            crlf in any::<bool>(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let bytes = encode(&events, crlf);
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&bytes[last..p]);
                last = p;
            }
            chunks.push(&bytes[last..]);
            let parsed = parse_all(&chunks);
            let expected: Vec<SseEvent> = events
                .iter()
                .map(|(e, d)| SseEvent { event: e.clone(), data: d.clone(), id: None })
                .collect();
            prop_assert_eq!(parsed, expected);
        }

        /// Arbitrary bytes never panic.
        #[test]
        fn garbage_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut p = SseParser::new();
            let mut out = Vec::new();
            for c in &chunks {
                let _ = p.feed(c, &mut out);
            }
        }
    }
}
