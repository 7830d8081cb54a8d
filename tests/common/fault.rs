//! A fault proxy: a TCP relay in front of an endpoint that holds back what the endpoint sends
//! by a delay that a test sets and changes while it runs (a slowed endpoint on demand), and
//! that a test can cut off (a network partition on demand).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A relay on 127.0.0.1:0 to `target`; each chunk the target sends is held back by the
/// current delay (a response that fits in one chunk arrives that much later).
pub struct FaultProxy {
    pub addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    /// The relayed connections end when it is cancelled; `None` while cut off.
    links: Arc<Mutex<Option<CancellationToken>>>,
    cancel: CancellationToken,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl FaultProxy {
    /// A relay to `target` that delays by `delay`.
    pub async fn start(target: SocketAddr, delay: Duration) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let delay_ms = Arc::new(AtomicU64::new(delay.as_millis() as u64));
        let cancel = CancellationToken::new();
        let links = Arc::new(Mutex::new(Some(cancel.child_token())));
        let (stop, delays, current) = (cancel.clone(), delay_ms.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let (client, _) = tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => accepted.unwrap(),
                };
                // Cut off: the connection is closed at once.
                let Some(link) = current.lock().unwrap().clone() else {
                    continue;
                };
                let delays = delays.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = relay(client, server, delays) => {}
                        _ = link.cancelled() => {}
                    }
                });
            }
        });
        FaultProxy {
            addr,
            delay_ms,
            links,
            cancel,
        }
    }

    /// Closes every relayed connection and closes new ones at once, until [`FaultProxy::restore`].
    pub fn cut(&self) {
        if let Some(link) = self.links.lock().unwrap().take() {
            link.cancel();
        }
    }

    /// Relays new connections again after [`FaultProxy::cut`].
    pub fn restore(&self) {
        *self.links.lock().unwrap() = Some(self.cancel.child_token());
    }

    /// Changes the delay of what the target sends from now on.
    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

async fn relay(client: TcpStream, server: TcpStream, delay_ms: Arc<AtomicU64>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = tokio::io::copy(&mut client_read, &mut server_write);
    let downstream = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match server_read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let delay = delay_ms.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(Duration::from_millis(delay)).await;
            }
            if client_write.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}
