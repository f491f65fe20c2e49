//! The broker's open connections, whatever protocol they speak: who they are (user, vhost,
//! peer, client properties), their channels' counters, and a handle to close them, so
//! deleting a user or a vhost can close its connections and the management API can list
//! and close them. A connection is registered for as long as its [`Registration`] lives.

use std::collections::HashMap;
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use warren_amqp::FieldTable;

use crate::stats::{ChannelStats, ConnectionStats, MessageCounts, SizeCounts};
use crate::VHost;

/// What the broker can ask of a front end's connection.
pub trait ConnectionControl: Send + Sync {
    /// Closes the connection as forced by the broker (AMQP: 320 CONNECTION_FORCED with
    /// `reason` as the text).
    fn force_close(&self, reason: String);
}

/// What a connection is, fixed once it is open.
#[derive(Debug, Clone, Default)]
pub struct ConnectionInfo {
    /// RabbitMQ's form: `peer_host:peer_port -> host:port`.
    pub name: String,
    /// As RabbitMQ reports it, e.g. `AMQP 0-9-1`.
    pub protocol: String,
    pub user: String,
    pub vhost: String,
    pub peer_host: String,
    pub peer_port: u16,
    pub host: String,
    pub port: u16,
    pub ssl: bool,
    pub auth_mechanism: String,
    /// Milliseconds since the Unix epoch.
    pub connected_at: u64,
    pub client_properties: FieldTable,
    pub frame_max: u32,
    pub channel_max: u16,
    /// Negotiated heartbeat, seconds.
    pub timeout: u16,
}

/// What changes while a connection is open: its counters and its channels' counters.
#[derive(Default)]
pub struct ConnectionState {
    pub stats: ConnectionStats,
    channels: Mutex<Vec<(u16, Arc<ChannelStats>)>>,
    /// Where a closed channel's counters go, so that vhost and broker totals never
    /// go backwards.
    vhost: Weak<VHost>,
    registry: Weak<Connections>,
}

impl ConnectionState {
    /// A channel opened: its counters, for the channel to write.
    pub fn open_channel(&self, number: u16) -> Arc<ChannelStats> {
        let stats = Arc::new(ChannelStats::default());
        crate::stats::count(&crate::stats::CHURN.channel_created);
        let mut channels = self.channels.lock();
        channels.retain(|(n, _)| *n != number);
        channels.push((number, Arc::clone(&stats)));
        stats
    }

    pub fn close_channel(&self, number: u16) {
        self.retire_where(|n| n == number);
    }

    /// Removes the channels `closing` picks and moves their counters into the vhost's and
    /// the broker's totals, under the broker's lock so a reader of the totals sees each
    /// channel exactly once (a Prometheus counter never dips).
    fn retire_where(&self, closing: impl Fn(u16) -> bool) {
        let registry = self.registry.upgrade();
        let mut retired = registry.as_ref().map(|r| r.retired.lock());
        let closed: Vec<_> = {
            let mut channels = self.channels.lock();
            let (closed, open) = channels.drain(..).partition(|(n, _)| closing(*n));
            *channels = open;
            closed
        };
        let vhost = self.vhost.upgrade();
        for (_, stats) in closed {
            crate::stats::count(&crate::stats::CHURN.channel_closed);
            let counts = stats.counts();
            if let Some(vhost) = &vhost {
                vhost.absorb_channel_counts(&counts);
            }
            if let Some(retired) = retired.as_mut() {
                retired.0.add(&counts);
                retired.1.add(&stats.sizes.read());
            }
        }
    }

    pub fn channels(&self) -> Vec<(u16, Arc<ChannelStats>)> {
        self.channels.lock().clone()
    }
}

struct Entry {
    info: Arc<ConnectionInfo>,
    state: Arc<ConnectionState>,
    control: Weak<dyn ConnectionControl>,
}

/// One open connection as listed.
#[derive(Clone)]
pub struct ConnectionSnapshot {
    pub id: u64,
    pub info: Arc<ConnectionInfo>,
    pub state: Arc<ConnectionState>,
}

#[derive(Default)]
pub struct Connections {
    open: RwLock<HashMap<u64, Entry>>,
    /// Counters of every channel that has closed.
    retired: Mutex<(MessageCounts, SizeCounts)>,
}

/// Broker-wide message counters (every channel that ever was) and the published-size
/// histogram, read at one moment.
#[derive(Debug, Default, Clone, Copy)]
pub struct GlobalCounts {
    pub messages: MessageCounts,
    pub sizes: SizeCounts,
    /// Open channels that have published (RabbitMQ's `publishers`).
    pub publishers: u64,
    /// Consumers on open channels.
    pub consumers: u64,
}

/// Keeps a connection registered; dropping it (however the connection's task ends)
/// unregisters it.
pub struct Registration {
    registry: Weak<Connections>,
    id: u64,
    state: Arc<ConnectionState>,
}

impl Registration {
    /// The connection's live counters, for the front end to write.
    pub fn state(&self) -> &Arc<ConnectionState> {
        &self.state
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let churn = &crate::stats::CHURN;
        churn
            .connection_closed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.state.retire_where(|_| true);
        if let Some(registry) = self.registry.upgrade() {
            registry.open.write().remove(&self.id);
        }
    }
}

impl Connections {
    pub fn register(
        self: &Arc<Self>,
        id: u64,
        info: ConnectionInfo,
        control: Weak<dyn ConnectionControl>,
        vhost: Weak<VHost>,
    ) -> Registration {
        let state = Arc::new(ConnectionState {
            vhost,
            registry: Arc::downgrade(self),
            ..Default::default()
        });
        crate::stats::count(&crate::stats::CHURN.connection_created);
        self.open.write().insert(
            id,
            Entry {
                info: Arc::new(info),
                state: Arc::clone(&state),
                control,
            },
        );
        Registration {
            registry: Arc::downgrade(self),
            id,
            state,
        }
    }

    pub fn count(&self) -> usize {
        self.open.read().len()
    }

    /// Counts work done outside any channel (the management API's publish and get, which
    /// RabbitMQ does over an internal channel) in the broker's totals.
    pub fn count_unchannelled(&self, counts: &MessageCounts) {
        self.retired.lock().0.add(counts);
    }

    /// The broker's message counters: closed channels' plus the open ones'.
    pub fn global_counts(&self) -> GlobalCounts {
        let retired = self.retired.lock();
        let mut total = GlobalCounts {
            messages: retired.0,
            sizes: retired.1,
            ..Default::default()
        };
        for entry in self.open.read().values() {
            for (_, channel) in entry.state.channels() {
                let counts = channel.counts();
                total.publishers += u64::from(counts.publish > 0);
                total.consumers += crate::stats::get(&channel.consumer_count);
                total.messages.add(&counts);
                total.sizes.add(&channel.sizes.read());
            }
        }
        total
    }

    /// Every open connection.
    pub fn list(&self) -> Vec<ConnectionSnapshot> {
        self.open
            .read()
            .iter()
            .map(|(id, e)| ConnectionSnapshot {
                id: *id,
                info: Arc::clone(&e.info),
                state: Arc::clone(&e.state),
            })
            .collect()
    }

    /// Closes every connection `select` picks (by user and vhost) with `reason`; returns
    /// how many.
    pub fn close_where(&self, select: impl Fn(&str, &str) -> bool, reason: &str) -> usize {
        self.close_matching(|info| select(&info.user, &info.vhost), reason)
    }

    /// Closes every connection `select` picks with `reason`; returns how many.
    pub fn close_matching(&self, select: impl Fn(&ConnectionInfo) -> bool, reason: &str) -> usize {
        let chosen: Vec<Arc<dyn ConnectionControl>> = self
            .open
            .read()
            .values()
            .filter(|e| select(&e.info))
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

    fn info(user: &str, vhost: &str) -> ConnectionInfo {
        ConnectionInfo {
            user: user.into(),
            vhost: vhost.into(),
            ..Default::default()
        }
    }

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
        let a = registry.register(
            1,
            info("alice", "/"),
            Arc::downgrade(&alice_dyn),
            Weak::new(),
        );
        let _b = registry.register(2, info("bob", "v"), Arc::downgrade(&bob_dyn), Weak::new());
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

    #[test]
    fn closed_channels_keep_counting_in_the_totals() {
        let registry = Arc::new(Connections::default());
        let control: Arc<dyn ConnectionControl> = Arc::new(Recorder::default());
        let conn = registry.register(1, info("u", "/"), Arc::downgrade(&control), Weak::new());
        let ch = conn.state().open_channel(1);
        crate::stats::bump(&ch.publish, 3);
        ch.sizes.observe(10);
        let other = conn.state().open_channel(2);
        crate::stats::bump(&other.publish, 1);
        assert_eq!(registry.global_counts().messages.publish, 4);
        assert_eq!(registry.global_counts().publishers, 2);
        conn.state().close_channel(1);
        let after = registry.global_counts();
        assert_eq!((after.messages.publish, after.publishers), (4, 1));
        assert_eq!(after.sizes.buckets[0], 1);
        drop(conn);
        assert_eq!(registry.global_counts().messages.publish, 4);
    }
}
