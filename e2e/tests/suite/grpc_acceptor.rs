//! The hub's `helix/grpc/1` acceptor asks again, once a connection is registered, whether its
//! peer may still connect: a device revoked between the handshake's check and the
//! registration is not left with a live connection the revoke never saw.

use std::{sync::Arc, time::Duration};

use helix_mesh::{
    iroh_grpc::{ConnectionTracker, GrpcAcceptor},
    transport::{ALPN_GRPC, CLOSE_REVOKED},
};
use iroh::{
    SecretKey,
    endpoint::{ConnectionError, VarInt},
    protocol::Router,
};

use crate::support::loopback_endpoint;

#[tokio::test]
async fn a_peer_the_gate_refuses_after_registration_is_closed_with_its_reason() {
    let server = loopback_endpoint(SecretKey::generate(), &[ALPN_GRPC]).await;
    let tracker = ConnectionTracker::default();
    let client_key = SecretKey::generate();
    let refused = client_key.public();
    let (acceptor, _incoming) = GrpcAcceptor::new(tracker.clone());
    // As the hub's gate does once the device is gone from devices.json.
    let acceptor = acceptor.with_gate(Arc::new(move |peer| {
        (*peer == refused).then(|| (CLOSE_REVOKED, "revoked meanwhile".to_owned()))
    }));
    let router = Router::builder(server.clone())
        .accept(ALPN_GRPC, acceptor)
        .spawn();

    let client = loopback_endpoint(client_key, &[]).await;
    let conn = client.connect(server.addr(), ALPN_GRPC).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .expect("the hub closes the connection");
    match closed {
        ConnectionError::ApplicationClosed(close) => {
            assert_eq!(close.error_code, VarInt::from_u32(CLOSE_REVOKED));
            assert_eq!(&close.reason[..], b"revoked meanwhile");
        }
        other => panic!("closed otherwise: {other:?}"),
    }
    assert_eq!(tracker.count(client.id()), 0, "not left registered");

    // Another peer, whom the gate lets in, keeps its connection and is registered.
    let other = loopback_endpoint(SecretKey::generate(), &[]).await;
    let kept = other.connect(server.addr(), ALPN_GRPC).await.unwrap();
    let (mut send, _recv) = kept.open_bi().await.unwrap();
    send.write_all(b"PRI").await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tracker.count(other.id()) == 0 {
        assert!(tokio::time::Instant::now() < deadline, "never registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(kept.close_reason().is_none(), "{:?}", kept.close_reason());
    router.shutdown().await.unwrap();
}
