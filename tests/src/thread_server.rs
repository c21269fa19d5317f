//! An actix-web server on a thread (and actix System) of its own, for the
//! stand-ins the tests run beside the registry; stopped when dropped.

use actix_web::{web, App, HttpServer};
use std::net::TcpListener;

pub struct ThreadServer {
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ThreadServer {
    /// Serves the routes `configure` sets up on `listener`, one worker.
    pub fn start(
        listener: TcpListener,
        configure: impl Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    ) -> Self {
        let (sender, receiver) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(1)
                    .disable_signals()
                    .listen(listener)
                    .expect("listen")
                    .run();
                let _ = sender.send(server.handle());
                let _ = server.await;
            })
        });
        let handle = receiver.recv().expect("the server starts");
        ThreadServer {
            handle,
            thread: Some(thread),
        }
    }
}

impl Drop for ThreadServer {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || futures::executor::block_on(handle.stop(false))).join();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
