//! Attaching and detaching consumers: single active consumer hand-over, consumer
//! priorities, exclusivity, and the auto-delete decision when the last one leaves.

use std::sync::Arc;

use super::{Consumer, ConsumerSpec, Queue};
use crate::clock::LazyNow;
use crate::error::{CoreError, CoreResult};

impl Queue {
    /// Attaches a consumer and dispatches to it.
    pub fn add_consumer(self: &Arc<Self>, spec: ConsumerSpec) -> CoreResult<()> {
        let now = LazyNow::new();
        let mut st = self.state.lock();
        if self.is_deleted() {
            return Err(CoreError::not_found(format!(
                "no queue '{}' in vhost '{}'",
                self.spec.name, self.vhost
            )));
        }
        let exclusive_taken = st.consumers.iter().any(|c| c.spec.exclusive);
        if exclusive_taken || (spec.exclusive && !st.consumers.is_empty()) {
            return Err(CoreError::access_refused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.spec.name, self.vhost
            )));
        }
        st.consumers.push(Consumer { spec });
        st.note_consumers_changed();
        st.had_consumer = true;
        st.last_used = now.get();
        let mut dead = Vec::new();
        self.dispatch_locked(&mut st, &now, &mut dead);
        drop(st);
        self.emit(dead);
        Ok(())
    }

    /// Detaches a consumer. Returns true when the queue is auto-delete and this was its last
    /// consumer, so the caller should delete it.
    pub fn remove_consumer(self: &Arc<Self>, connection_id: u64, channel: u16, tag: &str) -> bool {
        let now = LazyNow::new();
        let mut st = self.state.lock();
        let before = st.consumers.len();
        st.consumers.retain(|c| {
            !(c.spec.connection_id == connection_id
                && c.spec.channel == channel
                && &*c.spec.tag == tag)
        });
        let removed = before != st.consumers.len();
        st.note_consumers_changed();
        let mut dead = Vec::new();
        if removed {
            st.last_used = now.get();
            // With a single active consumer, the next in line takes over now.
            self.dispatch_locked(&mut st, &now, &mut dead);
            self.arm_timer(&mut st);
        }
        let auto_delete =
            removed && self.spec.auto_delete && st.had_consumer && st.consumers.is_empty();
        drop(st);
        self.emit(dead);
        auto_delete
    }

    pub fn consumer_count(&self) -> usize {
        self.state.lock().consumers.len()
    }
}
