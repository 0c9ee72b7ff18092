//! A TCP server on a free loopback port for the bench's stand-ins (the counting proxy, the
//! slow Auth server): each accepted connection goes to a handler on a task of its own.

use std::{future::Future, net::SocketAddr};

use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// The server; its accept loop stops when this is dropped.
pub struct LoopbackServer {
    pub addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl LoopbackServer {
    pub async fn start<F, Fut>(handle: F) -> std::io::Result<Self>
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(handle(stream));
            }
        });
        Ok(Self { addr, accept })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}
