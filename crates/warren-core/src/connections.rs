//! The broker's open connections, whatever protocol they speak: who they are (user, vhost)
//! and a handle to close them, so deleting a user or a vhost can close its connections
//! (and the management API can list them). A connection is registered for as long as its
//! [`Registration`] lives.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::RwLock;

/// What the broker can ask of a front end's connection.
pub trait ConnectionControl: Send + Sync {
    /// Closes the connection as forced by the broker (AMQP: 320 CONNECTION_FORCED with
    /// `reason` as the text).
    fn force_close(&self, reason: String);
}

struct Entry {
    user: String,
    vhost: String,
    control: Weak<dyn ConnectionControl>,
}

#[derive(Default)]
pub struct Connections {
    open: RwLock<HashMap<u64, Entry>>,
}

/// Keeps a connection registered; dropping it (however the connection's task ends)
/// unregisters it.
pub struct Registration {
    registry: Weak<Connections>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(registry) = self.registry.upgrade() {
            registry.open.write().remove(&self.id);
        }
    }
}

impl Connections {
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        user: &str,
        vhost: &str,
        control: Weak<dyn ConnectionControl>,
    ) -> Registration {
        self.open.write().insert(
            id,
            Entry {
                user: user.to_string(),
                vhost: vhost.to_string(),
                control,
            },
        );
        Registration {
            registry: Arc::downgrade(self),
            id,
        }
    }

    pub fn count(&self) -> usize {
        self.open.read().len()
    }

    /// Closes every connection `select` picks (by user and vhost) with `reason`; returns
    /// how many.
    pub fn close_where(&self, select: impl Fn(&str, &str) -> bool, reason: &str) -> usize {
        let chosen: Vec<Arc<dyn ConnectionControl>> = self
            .open
            .read()
            .values()
            .filter(|e| select(&e.user, &e.vhost))
            .filter_map(|e| e.control.upgrade())
            .collect();
        for c in &chosen {
            c.force_close(reason.to_string());
        }
        chosen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl ConnectionControl for Recorder {
        fn force_close(&self, reason: String) {
            self.0.lock().push(reason);
        }
    }

    #[test]
    fn closes_only_the_chosen_and_forgets_dropped_registrations() {
        let registry = Arc::new(Connections::default());
        let alice = Arc::new(Recorder::default());
        let bob = Arc::new(Recorder::default());
        let alice_dyn: Arc<dyn ConnectionControl> = alice.clone();
        let bob_dyn: Arc<dyn ConnectionControl> = bob.clone();
        let a = registry.register(1, "alice", "/", Arc::downgrade(&alice_dyn));
        let _b = registry.register(2, "bob", "v", Arc::downgrade(&bob_dyn));
        assert_eq!(
            registry.close_where(|u, _| u == "alice", "user 'alice' is deleted"),
            1
        );
        assert_eq!(alice.0.lock().as_slice(), ["user 'alice' is deleted"]);
        assert!(bob.0.lock().is_empty());
        drop(a);
        assert_eq!(registry.count(), 1);
        assert_eq!(
            registry.close_where(|_, v| v == "v", "vhost 'v' is deleted"),
            1
        );
    }
}
