//! A loopback TCP proxy that counts the HTTP/1.1 requests passing through it, by method and
//! path: how the idle hub's traffic to Supabase is measured without trusting the hub's own
//! accounting.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use crate::loopback::LoopbackServer;

/// Requests seen, keyed by `METHOD /path` (query strings dropped).
type Counts = Arc<Mutex<BTreeMap<String, u64>>>;

/// Longest request line looked at; longer lines are bodies, not request lines.
const MAX_LINE: usize = 8 * 1024;

pub struct CountingProxy {
    pub url: String,
    counts: Counts,
    _server: LoopbackServer,
}

impl CountingProxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<Self> {
        let counts = Counts::default();
        let server = LoopbackServer::start({
            let counts = counts.clone();
            move |client| forward(client, upstream, counts.clone())
        })
        .await?;
        Ok(Self {
            url: server.url(),
            counts,
            _server: server,
        })
    }

    /// The counts since the last call, and a fresh start.
    pub fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

async fn forward(client: TcpStream, upstream: SocketAddr, counts: Counts) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut line = Vec::new();
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for &b in &buf[..n] {
                if b == b'\n' {
                    if let Some(key) = request_line(&line) {
                        *counts
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .entry(key)
                            .or_default() += 1;
                    }
                    line.clear();
                } else if line.len() < MAX_LINE {
                    line.push(b);
                }
            }
            if server_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let responses = async {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(requests, responses);
}

/// `METHOD /path` when `line` is an HTTP/1.x request line (without its `\n`).
fn request_line(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?.strip_suffix('\r')?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let known = ["GET", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"];
    if parts.next().is_some() || !known.contains(&method) || !version.starts_with("HTTP/1.") {
        return None;
    }
    let path = target.split('?').next().unwrap_or(target);
    Some(format!("{method} {path}"))
}

#[cfg(test)]
mod tests {
    use super::request_line;

    #[test]
    fn request_lines_are_recognised_and_bodies_are_not() {
        assert_eq!(
            request_line(b"POST /rpc/claim_commands?x=1 HTTP/1.1\r").as_deref(),
            Some("POST /rpc/claim_commands")
        );
        assert_eq!(request_line(b"{\"a\": \"GET / HTTP/1.1\"}\r"), None);
        assert_eq!(request_line(b"host: 127.0.0.1\r"), None);
    }
}
