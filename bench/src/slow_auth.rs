//! A stand-in for Supabase Auth's refresh grant (`POST /auth/v1/token`) that answers after a
//! delay: what a spoke meets when its cloud session has expired and the network is slow. Each
//! answer is a new session for [`USER`] (an access token postrust accepts).

use std::time::Duration;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use helix_testkit::{pg::ALICE as USER, postrust::jwt_for};

use crate::loopback::LoopbackServer;

/// Starts the server on a free loopback port (it stops when dropped); every request is
/// answered `delay` after it arrived.
pub async fn start(delay: Duration) -> std::io::Result<LoopbackServer> {
    LoopbackServer::start(move |stream| answer(stream, delay)).await
}

/// Reads one request (headers and a `Content-Length` body), waits, answers and closes.
async fn answer(mut stream: TcpStream, delay: Duration) {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let Ok(n) = stream.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        if complete(&request) {
            break;
        }
    }
    tokio::time::sleep(delay).await;
    let body = serde_json::json!({
        "access_token": jwt_for(USER),
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": uuid::Uuid::new_v4().to_string(),
        "user": {"id": USER},
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// Whether `request` holds its headers and the whole body they announce.
fn complete(request: &[u8]) -> bool {
    let Some(end) = request.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let headers = String::from_utf8_lossy(&request[..end]).to_ascii_lowercase();
    let length = headers
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    request.len() >= end + 4 + length
}
