//! Hex text for 32-byte values (keys and pairing secrets), shared by [`crate::ticket`] and
//! [`crate::transport`]: lower case out, either case in.

/// `bytes` as lower-case hex.
pub fn encode(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Exactly 32 bytes from hex (either case); `None` for anything else. Never panics on
/// untrusted input (`decode_mut` would, for a wrong length).
pub fn decode32(text: &str) -> Option<[u8; 32]> {
    let bytes = data_encoding::HEXLOWER_PERMISSIVE
        .decode(text.as_bytes())
        .ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn round_trips_in_either_case(bytes in any::<[u8; 32]>()) {
            let text = encode(&bytes);
            prop_assert_eq!(decode32(&text), Some(bytes));
            prop_assert_eq!(decode32(&text.to_ascii_uppercase()), Some(bytes));
        }
    }

    #[test]
    fn other_lengths_and_non_hex_are_refused() {
        assert_eq!(decode32(""), None);
        assert_eq!(decode32(&"a".repeat(62)), None);
        assert_eq!(decode32(&"a".repeat(66)), None);
        assert_eq!(decode32(&"g".repeat(64)), None);
    }
}
