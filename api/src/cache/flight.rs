//! One fetch per key at a time on this node: the first request leads it,
//! the others wait for its outcome and then serve what it stored.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// How a fetch ended, as its waiters see it.
pub type Outcome = Result<(), crate::error::ApiError>;

/// What a waiter learns: the outcome, or that the leader went away
/// before it had one (its client left while it waited on the upstream).
#[derive(Clone)]
enum Ended {
    Finished(Outcome),
    Abandoned,
}

type Running = Arc<Mutex<HashMap<String, watch::Receiver<Option<Ended>>>>>;

#[derive(Default)]
pub struct Flights {
    running: Running,
}

pub enum Joined {
    /// No fetch of the key was running: this request runs it.
    Lead(Lead),
    /// Another request runs it: wait for it.
    Follow(Follow),
}

/// The right (and duty) to fetch a key; dropping it unfinished tells the
/// waiters the fetch was abandoned, so one of them leads the next.
pub struct Lead {
    key: String,
    running: Running,
    done: watch::Sender<Option<Ended>>,
    finished: bool,
}

pub struct Follow(watch::Receiver<Option<Ended>>);

impl Flights {
    pub fn join(&self, key: String) -> Joined {
        let mut running = self
            .running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(waiting) = running.get(&key) {
            return Joined::Follow(Follow(waiting.clone()));
        }
        let (done, waiting) = watch::channel(None);
        running.insert(key.clone(), waiting);
        Joined::Lead(Lead {
            key,
            running: self.running.clone(),
            done,
            finished: false,
        })
    }
}

impl Lead {
    /// A waiter for this very fetch (for a request that leads it but
    /// serves only once it is stored).
    pub fn follower(&self) -> Follow {
        Follow(self.done.subscribe())
    }

    pub fn finish(mut self, outcome: Outcome) {
        self.end(Ended::Finished(outcome));
    }

    fn end(&mut self, ended: Ended) {
        self.finished = true;
        self.running
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.key);
        let _ = self.done.send(Some(ended));
    }
}

impl Drop for Lead {
    fn drop(&mut self) {
        if !self.finished {
            self.end(Ended::Abandoned);
        }
    }
}

impl Follow {
    /// The fetch's outcome; `None` when it was abandoned (join again).
    pub async fn outcome(mut self) -> Option<Outcome> {
        match self.0.wait_for(Option::is_some).await {
            Ok(ended) => match ended.clone() {
                Some(Ended::Finished(outcome)) => Some(outcome),
                _ => None,
            },
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_request_leads_the_others_wait_for_its_outcome() {
        let flights = Flights::default();
        let Joined::Lead(lead) = flights.join("k".into()) else {
            panic!("the first leads")
        };
        let Joined::Follow(follow) = flights.join("k".into()) else {
            panic!("the second follows")
        };
        assert!(matches!(flights.join("other".into()), Joined::Lead(_)));
        lead.finish(Ok(()));
        assert!(matches!(follow.outcome().await, Some(Ok(()))));
        let Joined::Lead(lead) = flights.join("k".into()) else {
            panic!("a finished fetch runs again")
        };
        let Joined::Follow(follow) = flights.join("k".into()) else {
            panic!("follows")
        };
        drop(lead);
        assert!(follow.outcome().await.is_none(), "abandoned");
        assert!(
            matches!(flights.join("k".into()), Joined::Lead(_)),
            "a waiter of an abandoned fetch leads the next"
        );
    }
}
