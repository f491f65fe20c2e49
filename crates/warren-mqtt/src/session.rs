//! The broker's MQTT sessions by vhost and client identifier: who holds each one now (so
//! that a second CONNECT with the same client id takes the session over, closing the first
//! connection and waiting until it has let go of its queues), and the packet-identifier
//! state that outlives a connection of a persistent session (QoS 2 messages received but
//! not yet released, deliveries released but not yet completed). Subscriptions and queued
//! messages live in the session's queues and bindings, in the core, durable as they are.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::watch;

/// How a session's holder is told that another connection takes it over.
pub trait Kick: Send + Sync {
    fn kick(&self);
}

struct Holder {
    connection: u64,
    kick: Arc<dyn Kick>,
    released: watch::Receiver<()>,
}

/// What survives between two connections of one persistent session.
#[derive(Default, Debug, Clone)]
pub struct Carried {
    /// QoS 2 publishes from the client answered with PUBREC, awaiting PUBREL.
    pub awaiting_release: BTreeSet<u16>,
    /// QoS 2 deliveries to the client that got PUBREC: PUBREL sent, awaiting PUBCOMP.
    pub awaiting_complete: BTreeSet<u16>,
    /// Deliveries sent at QoS 1 or 2 and not acknowledged when the connection ended, by
    /// (queue, message sequence number): the next connection resends each with its
    /// original packet identifier (MQTT 5 section 4.4), so a QoS 2 receiver recognises it.
    pub resend: HashMap<(String, u64), u16>,
    /// Bumped on every connect: a delayed will of an earlier connection checks it.
    pub generation: u64,
}

impl Carried {
    /// Whether anything here must outlive the connection.
    pub fn is_empty(&self) -> bool {
        self.awaiting_release.is_empty()
            && self.awaiting_complete.is_empty()
            && self.resend.is_empty()
    }

    /// Whether `pid` is taken by an unfinished exchange or held for a resend.
    pub fn pid_reserved(&self, pid: u16) -> bool {
        self.awaiting_complete.contains(&pid) || self.resend.values().any(|p| *p == pid)
    }
}

#[derive(Default)]
pub struct Slot {
    holder: Mutex<Option<Holder>>,
    pub carried: Mutex<Carried>,
}

/// A connection's hold on its session; `release` (or drop) lets the next one in.
pub struct Hold {
    pub slot: Arc<Slot>,
    connection: u64,
    released: Option<watch::Sender<()>>,
}

impl Hold {
    pub fn release(&mut self) {
        let mut holder = self.slot.holder.lock();
        if holder
            .as_ref()
            .is_some_and(|h| h.connection == self.connection)
        {
            *holder = None;
        }
        drop(holder);
        self.released.take();
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

#[derive(Default)]
pub struct Sessions {
    slots: Mutex<HashMap<(String, String), Arc<Slot>>>,
}

/// How long a takeover waits for the previous connection to let go.
const TAKEOVER_WAIT: Duration = Duration::from_secs(5);

impl Sessions {
    /// Takes the session `(vhost, client_id)` for `connection`: an existing holder is told to
    /// go and awaited (bounded). Returns the hold and whether another connection held it.
    pub async fn take(
        &self,
        vhost: &str,
        client_id: &str,
        connection: u64,
        kick: Arc<dyn Kick>,
    ) -> (Hold, bool) {
        let slot = Arc::clone(
            self.slots
                .lock()
                .entry((vhost.to_string(), client_id.to_string()))
                .or_default(),
        );
        let mut took_over = false;
        for _ in 0..8 {
            let waiting = {
                let mut holder = slot.holder.lock();
                match holder.as_ref() {
                    Some(h) => {
                        h.kick.kick();
                        Some((h.connection, h.released.clone()))
                    }
                    None => {
                        let (tx, rx) = watch::channel(());
                        *holder = Some(Holder {
                            connection,
                            kick: Arc::clone(&kick),
                            released: rx,
                        });
                        slot.carried.lock().generation += 1;
                        return (
                            Hold {
                                slot: Arc::clone(&slot),
                                connection,
                                released: Some(tx),
                            },
                            took_over,
                        );
                    }
                }
            };
            took_over = true;
            if let Some((waited_on, mut rx)) = waiting {
                // Resolves (with an error) when the holder drops its sender.
                let _ = tokio::time::timeout(TAKEOVER_WAIT, async {
                    while rx.changed().await.is_ok() {}
                })
                .await;
                // A holder that did not let go in time is replaced all the same; only that
                // one: a third connection may have taken the session meanwhile, and is
                // kicked (and awaited) on the next round instead.
                let mut holder = slot.holder.lock();
                if holder
                    .as_ref()
                    .is_some_and(|h| h.connection == waited_on && h.released.has_changed().is_ok())
                {
                    *holder = None;
                }
            }
        }
        let (tx, rx) = watch::channel(());
        *slot.holder.lock() = Some(Holder {
            connection,
            kick,
            released: rx,
        });
        slot.carried.lock().generation += 1;
        (
            Hold {
                slot,
                connection,
                released: Some(tx),
            },
            took_over,
        )
    }

    /// Forgets a session's entry, called by its last holder (`mine`) once it let go: only
    /// if nobody else holds the entry (a connection taking the session over, a will waiting
    /// for its delay), so a session is never split between two entries.
    pub fn forget(&self, vhost: &str, client_id: &str, mine: &Arc<Slot>) {
        let mut slots = self.slots.lock();
        let key = (vhost.to_string(), client_id.to_string());
        let unused = slots.get(&key).is_some_and(|s| {
            Arc::ptr_eq(s, mine) && Arc::strong_count(s) == 2 && s.holder.lock().is_none()
        });
        if unused {
            slots.remove(&key);
        }
    }

    /// Sessions with an entry (held, or carrying state between connections).
    pub fn known(&self) -> usize {
        self.slots.lock().len()
    }

    /// Open sessions (held by a connection).
    pub fn held(&self) -> usize {
        self.slots
            .lock()
            .values()
            .filter(|s| s.holder.lock().is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Kick for Counter {
        fn kick(&self) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_holder_kicks_the_first_and_gets_the_session_once_it_lets_go() {
        let sessions = Arc::new(Sessions::default());
        let first_kicks = Arc::new(Counter::default());
        let (mut first, took) = sessions.take("/", "dev", 1, first_kicks.clone()).await;
        assert!(!took);
        first.slot.carried.lock().awaiting_release.insert(7);
        let s2 = Arc::clone(&sessions);
        let second =
            tokio::spawn(async move { s2.take("/", "dev", 2, Arc::new(Counter::default())).await });
        while first_kicks.0.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(sessions.held(), 1);
        first.release();
        let (second, took) = second.await.unwrap();
        assert!(took);
        // What the first connection left is carried to the second.
        assert!(second.slot.carried.lock().awaiting_release.contains(&7));
        drop(first);
        assert_eq!(sessions.known(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_entry_is_forgotten_only_by_its_last_holder() {
        let sessions = Sessions::default();
        let (mut hold, _) = sessions
            .take("/", "a", 1, Arc::new(Counter::default()))
            .await;
        // Still held: kept.
        sessions.forget("/", "a", &hold.slot);
        assert_eq!(sessions.known(), 1);
        hold.release();
        // Someone else (a delayed will) holds the entry: kept.
        let watcher = Arc::clone(&hold.slot);
        sessions.forget("/", "a", &hold.slot);
        assert_eq!(sessions.known(), 1);
        drop(watcher);
        sessions.forget("/", "a", &hold.slot);
        assert_eq!(sessions.known(), 0);
    }
}
