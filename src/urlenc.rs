//! Percent-encoding for URL query values (OAuth authorize URLs, the Realtime websocket URL).

/// Percent-encodes everything but RFC 3986 unreserved characters (`A–Z a–z 0–9 - . _ ~`).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_unreserved_and_encodes_the_rest_bytewise() {
        assert_eq!(percent_encode("aZ09-._~"), "aZ09-._~");
        assert_eq!(
            percent_encode("http://127.0.0.1:1455/auth callback?x=1&y"),
            "http%3A%2F%2F127.0.0.1%3A1455%2Fauth%20callback%3Fx%3D1%26y"
        );
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
