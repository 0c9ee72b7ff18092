//! Tickets: a hub's address (`helixhub…`, grants nothing) and a one-time pairing ticket
//! (`helixpair…`: the address plus a secret), and the pairing exchange spoken over
//! [`crate::transport::ALPN_PAIR`].
//!
//! A ticket is the prefix followed by lower-case base32 (no padding) of a small JSON document,
//! so it survives copy and paste, shells and QR codes.

use std::fmt;

use data_encoding::BASE32_NOPAD;
use iroh::{
    EndpointAddr,
    endpoint::{ClosedStream, ReadToEndError, RecvStream, SendStream, WriteError},
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Prefix of an address ticket.
pub const HUB_PREFIX: &str = "helixhub";
/// Prefix of a pairing ticket.
pub const PAIR_PREFIX: &str = "helixpair";
/// Ticket format version.
const TICKET_VERSION: u32 = 1;

/// Largest pairing message accepted, in bytes.
pub const MAX_PAIR_MESSAGE: usize = 4096;

/// A pairing secret: 32 random bytes. `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingSecret(pub [u8; 32]);

impl fmt::Debug for PairingSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingSecret(<redacted>)")
    }
}

impl PairingSecret {
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }

    pub fn from_hex(text: &str) -> Option<Self> {
        crate::hex::decode32(text).map(Self)
    }
}

/// A decoded ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ticket {
    /// Where a hub is.
    Hub(EndpointAddr),
    /// Where a hub is, and the secret that pairs one device with it.
    Pair {
        addr: EndpointAddr,
        secret: PairingSecret,
    },
}

#[derive(Serialize, Deserialize)]
struct TicketBody {
    v: u32,
    addr: EndpointAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

/// A string that is not a valid ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid helix ticket: {0}")]
pub struct BadTicket(String);

impl Ticket {
    /// The hub's address in the ticket.
    pub fn addr(&self) -> &EndpointAddr {
        match self {
            Ticket::Hub(addr) | Ticket::Pair { addr, .. } => addr,
        }
    }

    pub fn encode(&self) -> String {
        let (prefix, body) = match self {
            Ticket::Hub(addr) => (
                HUB_PREFIX,
                TicketBody {
                    v: TICKET_VERSION,
                    addr: addr.clone(),
                    secret: None,
                },
            ),
            Ticket::Pair { addr, secret } => (
                PAIR_PREFIX,
                TicketBody {
                    v: TICKET_VERSION,
                    addr: addr.clone(),
                    secret: Some(secret.to_hex()),
                },
            ),
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        format!(
            "{prefix}{}",
            BASE32_NOPAD.encode(&json).to_ascii_lowercase()
        )
    }

    pub fn decode(text: &str) -> Result<Self, BadTicket> {
        let text = text.trim();
        let (is_pair, rest) = if let Some(rest) = text.strip_prefix(PAIR_PREFIX) {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix(HUB_PREFIX) {
            (false, rest)
        } else {
            return Err(BadTicket(format!(
                "it should start with {PAIR_PREFIX} (from `helix-hub pair`) or {HUB_PREFIX} (from `helix-hub ticket`)"
            )));
        };
        let json = BASE32_NOPAD
            .decode(rest.to_ascii_uppercase().as_bytes())
            .map_err(|_| BadTicket("it is damaged (not base32); copy it again".into()))?;
        let body: TicketBody = serde_json::from_slice(&json)
            .map_err(|_| BadTicket("it is damaged (bad contents); copy it again".into()))?;
        if body.v != TICKET_VERSION {
            return Err(BadTicket(format!(
                "it has version {}, this program reads version {TICKET_VERSION}",
                body.v
            )));
        }
        match (is_pair, body.secret) {
            (false, None) => Ok(Ticket::Hub(body.addr)),
            (true, Some(s)) => Ok(Ticket::Pair {
                addr: body.addr,
                secret: PairingSecret::from_hex(&s)
                    .ok_or_else(|| BadTicket("its secret is damaged; copy it again".into()))?,
            }),
            _ => Err(BadTicket("its kind and contents disagree".into())),
        }
    }
}

/// What a spoke sends to pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairRequest {
    /// The ticket's secret, hex.
    pub secret: String,
    /// How the hub should call this device.
    pub name: String,
}

/// What the hub answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairResponse {
    pub ok: bool,
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub hub_name: String,
}

/// Reading or writing a pairing message failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PairWireError {
    #[error("pairing stream: {0}")]
    Write(#[from] WriteError),
    #[error("pairing stream: {0}")]
    Finish(#[from] ClosedStream),
    #[error("pairing stream: {0}")]
    Read(#[from] ReadToEndError),
    #[error("pairing message is malformed: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Writes one message and finishes the stream.
pub async fn write_pair_message<T: Serialize>(
    send: &mut SendStream,
    message: &T,
) -> Result<(), PairWireError> {
    let bytes = serde_json::to_vec(message)?;
    send.write_all(&bytes).await?;
    Ok(send.finish()?)
}

/// Reads one message (the whole stream, at most [`MAX_PAIR_MESSAGE`] bytes).
pub async fn read_pair_message<T: DeserializeOwned>(
    recv: &mut RecvStream,
) -> Result<T, PairWireError> {
    let bytes = recv.read_to_end(MAX_PAIR_MESSAGE).await?;
    Ok(serde_json::from_slice(&bytes)?)
}

#[cfg(test)]
mod tests {
    use iroh::{SecretKey, TransportAddr};
    use proptest::prelude::*;

    use super::*;

    fn addr(seed: u8, port: u16, relay: bool) -> EndpointAddr {
        let mut a = EndpointAddr::new(SecretKey::from_bytes(&[seed; 32]).public())
            .with_ip_addr(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        if relay {
            a = a.with_relay_url("http://127.0.0.1:3340".parse().unwrap());
        }
        a
    }

    proptest! {
        #[test]
        fn tickets_round_trip(seed in any::<u8>(), port in any::<u16>(), relay in any::<bool>(), secret in any::<[u8; 32]>(), pair in any::<bool>()) {
            let t = if pair {
                Ticket::Pair { addr: addr(seed, port, relay), secret: PairingSecret(secret) }
            } else {
                Ticket::Hub(addr(seed, port, relay))
            };
            let text = t.encode();
            prop_assert!(text.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
            prop_assert_eq!(Ticket::decode(&text).unwrap(), t);
        }

        #[test]
        fn garbage_is_refused_not_panicked(text in ".{0,200}") {
            let _ = Ticket::decode(&text);
            let _ = Ticket::decode(&format!("{PAIR_PREFIX}{text}"));
        }
    }

    proptest! {
        /// Pairing secrets arrive from unauthenticated peers: any text is refused, not a panic.
        #[test]
        fn any_secret_text_is_safe(text in ".{0,80}") {
            let parsed = PairingSecret::from_hex(&text);
            prop_assert_eq!(parsed.is_some(), text.len() == 64 && text.chars().all(|c| c.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(PairingSecret::from_hex("abcd"), None);
        assert_eq!(PairingSecret::from_hex(&"a".repeat(66)), None);
        let err = Ticket::decode("hello").unwrap_err().to_string();
        assert!(err.contains("helixpair"), "{err}");
        let good = Ticket::Hub(addr(1, 5, false)).encode();
        let damaged = format!("{}9", &good[..good.len() - 1]);
        assert!(
            Ticket::decode(&damaged)
                .unwrap_err()
                .to_string()
                .contains("damaged")
        );
        assert!(!format!("{:?}", PairingSecret([7; 32])).contains("07"));
        let _ = TransportAddr::Relay("http://x.invalid".parse().unwrap());
    }
}
