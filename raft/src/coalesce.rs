//! Coalescing concurrent calls of one operation into rounds, so a burst of
//! linearizable reads costs one read-index round trip instead of one each.
//!
//! A call never joins a round already under way (that round may have
//! started before the call did, and a read index taken before a read began
//! does not make it linearizable); it waits for the next round, which every
//! call that arrived meanwhile shares.

use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

#[derive(Debug)]
pub struct Coalescer<T> {
    state: Mutex<Rounds<T>>,
}

#[derive(Debug)]
struct Rounds<T> {
    running: bool,
    waiting: Vec<oneshot::Sender<T>>,
}

impl<T> Default for Coalescer<T> {
    fn default() -> Self {
        Coalescer {
            state: Mutex::new(Rounds {
                running: false,
                waiting: Vec::new(),
            }),
        }
    }
}

impl<T: Clone + Send + 'static> Coalescer<T> {
    /// Runs `op` in the next round and answers its result; `None` if the
    /// round was lost (its task panicked).
    pub async fn run<F, Fut>(self: &Arc<Self>, op: F) -> Option<T>
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = T> + Send,
    {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut state = self.lock();
            state.waiting.push(tx);
            !std::mem::replace(&mut state.running, true)
        };
        if start {
            let rounds = self.clone();
            tokio::spawn(async move {
                loop {
                    let batch = {
                        let mut state = rounds.lock();
                        if state.waiting.is_empty() {
                            state.running = false;
                            return;
                        }
                        std::mem::take(&mut state.waiting)
                    };
                    let result = op().await;
                    for waiter in batch {
                        let _ = waiter.send(result.clone());
                    }
                }
            });
        }
        rx.await.ok()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Rounds<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_calls_share_rounds_and_late_calls_wait_for_the_next() {
        let coalescer = Arc::new(Coalescer::default());
        let rounds = Arc::new(AtomicUsize::new(0));
        let op = {
            let rounds = rounds.clone();
            move || {
                let rounds = rounds.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    rounds.fetch_add(1, Ordering::SeqCst) + 1
                }
            }
        };
        let calls: Vec<_> = (0..50)
            .map(|_| {
                let coalescer = coalescer.clone();
                let op = op.clone();
                tokio::spawn(async move { coalescer.run(op).await.unwrap() })
            })
            .collect();
        let mut seen = Vec::new();
        for call in calls {
            seen.push(call.await.unwrap());
        }
        let total = rounds.load(Ordering::SeqCst);
        assert!(total <= 3, "50 concurrent calls took {total} rounds");
        // The first call started round 1 alone; everyone after shared later rounds.
        assert!(seen.iter().all(|round| *round >= 1 && *round <= total));
        let after = coalescer.run(op).await.unwrap();
        assert_eq!(
            after,
            total + 1,
            "a call after the others gets a fresh round"
        );
    }
}
