//! An endpoint that answers every request with a script: raw bytes, pauses, a clean close, a
//! reset, or silence — the upstream faults of `tests/faults.rs`. It counts the connections it
//! has open, so that a test can see weir close the ones it must not keep.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// One step of the answer to a request.
#[derive(Clone, Debug)]
pub enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Write these bytes one at a time, this long apart.
    Trickle(Vec<u8>, Duration),
    /// Wait this long.
    Pause(Duration),
    /// Close the connection (FIN).
    Close,
    /// Reset the connection (RST: SO_LINGER 0, then close).
    Reset,
}

/// The endpoint (see the module documentation).
pub struct ScriptedBackend {
    pub addr: SocketAddr,
    /// Connections open now (weir's side not yet closed, or the script not ended).
    pub open: Arc<AtomicUsize>,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicUsize>,
    cancel: CancellationToken,
}

impl Drop for ScriptedBackend {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl ScriptedBackend {
    /// Answers each request head with `script`; after a script that neither closes nor
    /// resets, waits for the next request on the same connection (or its end). An empty
    /// script never answers.
    pub async fn start(script: Vec<Step>) -> ScriptedBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicUsize::new(0));
        let cancel = CancellationToken::new();
        let (o, a, stop) = (open.clone(), accepted.clone(), cancel.clone());
        tokio::spawn(async move {
            loop {
                let (stream, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                a.fetch_add(1, Ordering::SeqCst);
                o.fetch_add(1, Ordering::SeqCst);
                let (o, script, stop) = (o.clone(), script.clone(), stop.clone());
                tokio::spawn(async move {
                    tokio::select! {
                        _ = serve(stream, &script) => {}
                        _ = stop.cancelled() => {}
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        ScriptedBackend {
            addr,
            open,
            accepted,
            cancel,
        }
    }
}

/// Reads request heads and plays the script for each, until the connection ends.
async fn serve(mut stream: TcpStream, script: &[Step]) {
    let mut buf = Vec::new();
    loop {
        // A request head (requests in these tests have no body).
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        buf.drain(..end);
        if script.is_empty() {
            // Never answer: wait for weir to give up.
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest).await;
            return;
        }
        for step in script {
            match step {
                Step::Send(bytes) => {
                    if stream.write_all(bytes).await.is_err() {
                        return;
                    }
                }
                Step::Trickle(bytes, every) => {
                    for byte in bytes {
                        if stream.write_all(&[*byte]).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(*every).await;
                    }
                }
                Step::Pause(pause) => tokio::time::sleep(*pause).await,
                Step::Close => {
                    let _ = stream.shutdown().await;
                    return;
                }
                Step::Reset => {
                    #[allow(deprecated)]
                    let _ = stream.set_linger(Some(Duration::ZERO));
                    return;
                }
            }
        }
    }
}
