//! `IrohIo`, the byte pipe gRPC runs on, over real iroh endpoints: every byte must arrive, in
//! order, when writes are tiny, vectored, large, or held back by QUIC flow control.

use std::{io::IoSlice, time::Duration};

use helix_mesh::iroh_grpc::IrohIo;
use iroh::SecretKey;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::loopback_endpoint;

const ALPN: &[u8] = b"helix-test/iroh-io/1";

/// Deterministic, position-dependent bytes: a reordered or lost range shows up in a compare.
fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u64).wrapping_mul(2_654_435_761).rotate_right(13) as u8)
        .collect()
}

#[tokio::test]
async fn writes_of_every_shape_arrive_whole_and_in_order_through_flow_control() {
    let endpoint = loopback_endpoint(SecretKey::generate(), &[ALPN]).await;
    let addr = endpoint.addr();
    let (go_tx, mut go_rx) = tokio::sync::mpsc::channel::<()>(1);
    let server = endpoint.clone();
    tokio::spawn(async move {
        let conn = server.accept().await.unwrap().await.unwrap();
        let (send, recv) = conn.accept_bi().await.unwrap();
        let mut io = IrohIo::new(send, recv, &conn);
        // Reads nothing until told: QUIC flow control holds the writer meanwhile.
        go_rx.recv().await;
        let mut got = Vec::new();
        io.read_to_end(&mut got).await.unwrap();
        io.write_all(&got).await.unwrap();
        io.shutdown().await.unwrap();
        conn.closed().await;
    });

    let client = loopback_endpoint(SecretKey::generate(), &[]).await;
    let conn = client.connect(addr, ALPN).await.unwrap();
    let (send, recv) = conn.open_bi().await.unwrap();
    let io = IrohIo::new(send, recv, &conn);
    let (mut reader, mut writer) = tokio::io::split(io);

    // 12 MiB: far more than the stream and connection windows, so the writer must wait for
    // the reader; in writes of every shape.
    let data = pattern(12 << 20);
    let expected = data.clone();
    let writing = tokio::spawn(async move {
        let mut at = 0;
        let mut round = 0usize;
        while at < data.len() {
            let left = data.len() - at;
            match round % 4 {
                // Tiny writes, flushed: HTTP/2 frame headers.
                0 => {
                    let n = left.min(9);
                    writer.write_all(&data[at..at + n]).await.unwrap();
                    writer.flush().await.unwrap();
                    at += n;
                }
                // A vectored write of a header and a payload.
                1 => {
                    let n = left.min(16 * 1024 + 9);
                    let (head, body) = data[at..at + n].split_at(n.min(9));
                    let slices = [IoSlice::new(head), IoSlice::new(body)];
                    let mut written = 0;
                    while written < n {
                        let k = writer.write_vectored(&slices).await.unwrap();
                        assert!(k > 0, "a vectored write took nothing");
                        written += k;
                        if written < n {
                            // Finish the remainder plainly.
                            writer.write_all(&data[at + written..at + n]).await.unwrap();
                            written = n;
                        }
                    }
                    at += n;
                }
                // One large write, not flushed.
                2 => {
                    let n = left.min(200 * 1024 + 123);
                    writer.write_all(&data[at..at + n]).await.unwrap();
                    at += n;
                }
                // Odd sizes, flushed.
                _ => {
                    let n = left.min(1000 + round % 7);
                    writer.write_all(&data[at..at + n]).await.unwrap();
                    writer.flush().await.unwrap();
                    at += n;
                }
            }
            round += 1;
        }
        writer.shutdown().await.unwrap();
    });

    // The peer reads nothing yet, so all 12 MiB cannot have gone out: the writer is held back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !writing.is_finished(),
        "12 MiB cannot fit the QUIC windows of a peer that reads nothing"
    );
    go_tx.send(()).await.unwrap();
    writing.await.unwrap();

    let mut echoed = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), reader.read_to_end(&mut echoed))
        .await
        .expect("the echo did not finish")
        .unwrap();
    assert_eq!(echoed.len(), expected.len());
    assert!(echoed == expected, "bytes differ from what was written");
    conn.close(0u32.into(), b"done");
}
