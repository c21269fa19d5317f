//! A per-connection round-robin TCP balancer, as a Kubernetes Service in
//! front of the cluster: each accepted connection goes to the next node
//! that accepts one (nodes that refuse are skipped, as a Service skips
//! unready endpoints only eventually; here, at once).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Balancer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Balancer {
    pub fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind balancer");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("balancer addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("balancer runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let next = Arc::new(AtomicUsize::new(0));
                let backends = Arc::new(backends);
                let accept = async {
                    loop {
                        let Ok((client, _)) = listener.accept().await else {
                            continue;
                        };
                        let (next, backends) = (next.clone(), backends.clone());
                        tokio::spawn(async move {
                            let _ = client.set_nodelay(true);
                            for _ in 0..backends.len() {
                                let i = next.fetch_add(1, Ordering::Relaxed) % backends.len();
                                if let Ok(mut server) =
                                    tokio::net::TcpStream::connect(backends[i]).await
                                {
                                    let _ = server.set_nodelay(true);
                                    let mut client = client;
                                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server)
                                        .await;
                                    return;
                                }
                            }
                        });
                    }
                };
                tokio::select! {
                    _ = accept => {}
                    _ = stopped => {}
                }
            });
            runtime.shutdown_background();
        });
        Balancer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
