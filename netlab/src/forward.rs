//! A TCP port inside the lab that carries each connection to one server of this machine's
//! own network namespace (e.g. a database's REST server on loopback): the lab's hosts reach
//! that one service, and nothing else, with no route out of the lab.

use std::net::SocketAddr;

use tokio::{
    net::{TcpListener, TcpStream},
    runtime::Handle,
    task::JoinHandle,
};

use crate::{LabError, NsRuntime};

/// A listening port in a namespace that forwards to a server outside it; closed on drop
/// (connections already carried end with their runtimes).
#[derive(Debug)]
pub struct Forward {
    addr: SocketAddr,
    accept: JoinHandle<()>,
}

impl Forward {
    /// Listens on `listen` in `inside`'s namespace and forwards every connection to `target`,
    /// dialed from the namespace of the runtime this is called on.
    pub async fn start(
        inside: &NsRuntime,
        listen: SocketAddr,
        target: SocketAddr,
    ) -> Result<Forward, LabError> {
        let outside = Handle::current();
        let listener = inside
            .run(async move { TcpListener::bind(listen).await })
            .await?
            .map_err(|e| LabError::new(format!("listening on {listen} in the lab: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| LabError::new(format!("the forward's address: {e}")))?;
        let runtime = inside
            .handle()
            .ok_or_else(|| LabError::new("the namespace's runtime is gone"))?;
        let accept = runtime.spawn(accept_loop(listener, outside, target));
        Ok(Forward { addr, accept })
    }

    /// The address the lab's hosts connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Forward {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(listener: TcpListener, outside: Handle, target: SocketAddr) {
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!("forward to {target}: accept failed: {e}");
                continue;
            }
        };
        let outside = outside.clone();
        tokio::spawn(async move {
            // The socket is made on the outside runtime, so it is in that namespace.
            let dialed = outside.spawn(TcpStream::connect(target)).await;
            let mut outbound = match dialed {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => {
                    tracing::warn!("forward {peer} → {target}: {e}");
                    return;
                }
                Err(e) => {
                    tracing::warn!("forward {peer} → {target}: the dial task failed: {e}");
                    return;
                }
            };
            let _ = outbound.set_nodelay(true);
            let _ = inbound.set_nodelay(true);
            if let Err(e) = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await {
                tracing::debug!("forward {peer} → {target} ended: {e}");
            }
        });
    }
}
