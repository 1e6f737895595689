//! A TCP proxy that cuts, refuses and slows real connections, for fault tests.

use std::time::Duration;

/// A TCP proxy to a local service, on its own thread and runtime (the test's runtime blocks
/// at times, and the gateway's traffic must never wait for it). It can refuse new
/// connections, cut every open one, as a restarting server does, and hold back each answer
/// of the service for a while, as a slow one does.
pub struct TcpProxy {
    pub port: u16,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
    cut: std::sync::Arc<tokio::sync::Notify>,
    delay_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl TcpProxy {
    /// A proxy to `127.0.0.1:target`, accepting connections when `up`.
    pub fn start(target: u16, up: bool) -> TcpProxy {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
        use std::sync::Arc;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let flag = Arc::new(AtomicBool::new(up));
        let cut = Arc::new(tokio::sync::Notify::new());
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (accepting, cutting, delaying) = (flag.clone(), cut.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                while let Ok((client, _)) = listener.accept().await {
                    if !accepting.load(Ordering::SeqCst) {
                        drop(client);
                        continue;
                    }
                    let (cutting, delaying) = (cutting.clone(), delaying.clone());
                    tokio::spawn(async move {
                        let cut = cutting.notified();
                        let Ok(server) =
                            tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                        else {
                            return;
                        };
                        let (mut client_in, mut client_out) = client.into_split();
                        let (mut server_in, mut server_out) = server.into_split();
                        let requests = tokio::io::copy(&mut client_in, &mut server_out);
                        let answers = async {
                            let mut buf = vec![0u8; 64 * 1024];
                            while let Ok(n) = server_in.read(&mut buf).await {
                                let delay = delaying.load(Ordering::SeqCst);
                                if n == 0 {
                                    break;
                                }
                                if delay > 0 {
                                    tokio::time::sleep(Duration::from_millis(delay)).await;
                                }
                                if client_out.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        };
                        tokio::select! {
                            _ = requests => {}
                            _ = answers => {}
                            _ = cut => {}
                        }
                    });
                }
            });
        });
        TcpProxy {
            port,
            up: flag,
            cut,
            delay_ms,
        }
    }

    /// Accept new connections (or refuse them).
    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }

    /// Closes every open connection, as a server restart does.
    pub fn cut_all(&self) {
        self.cut.notify_waiters();
    }

    /// Holds back every answer of the service for `delay` (zero: none), as a slow one does.
    pub fn delay_answers(&self, delay: Duration) {
        self.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }
}
