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
    /// Bumped on every connect: a delayed will of an earlier connection checks it.
    pub generation: u64,
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
                        Some(h.released.clone())
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
            if let Some(mut rx) = waiting {
                // Resolves (with an error) when the holder drops its sender.
                let _ = tokio::time::timeout(TAKEOVER_WAIT, async {
                    while rx.changed().await.is_ok() {}
                })
                .await;
                // A holder that did not let go in time is replaced all the same.
                let mut holder = slot.holder.lock();
                if holder
                    .as_ref()
                    .is_some_and(|h| h.released.has_changed().is_ok())
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

    /// Forgets the carried state of a session that ended (clean, or expired).
    pub fn forget(&self, vhost: &str, client_id: &str) {
        let mut slots = self.slots.lock();
        let key = (vhost.to_string(), client_id.to_string());
        if slots.get(&key).is_some_and(|s| s.holder.lock().is_none()) {
            slots.remove(&key);
        }
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
