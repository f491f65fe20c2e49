//! A vhost's description and its deletion: `delete_vhost` removes every exchange, queue
//! (with its stored messages), binding, policy and limit in one durable batch, and from
//! then on the vhost refuses every change (connections still open on it are being closed
//! by the broker).

use std::sync::atomic::Ordering;

use super::*;
use crate::persist::VHostMeta;

impl VHost {
    pub fn meta(&self) -> VHostMeta {
        self.meta.read().clone()
    }

    pub fn set_meta(&self, meta: VHostMeta) {
        *self.meta.write() = meta;
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Deletes everything the vhost holds, durably first: one batch of deletes for every
    /// saved queue, exchange, binding, policy and limit and the vhost record itself. Queues'
    /// consumers are cancelled; their stored messages are released with their logs.
    pub fn delete_everything(&self) -> CoreResult<()> {
        let _defs = self.definitions.lock();
        let mut changes = Vec::new();
        {
            let topo = self.topology.read();
            if self.persistence.is_some() {
                for q in topo.queues.values().filter(|q| q.log_id().is_some()) {
                    changes.push(persist::delete_queue(&self.name, q.name()));
                }
                for x in topo.exchanges.values() {
                    self.exchange_gone(&topo, x, &mut changes);
                }
                for p in self.policies.read().iter() {
                    changes.push(persist::delete_policy(&self.name, &p.name));
                }
                changes.push(persist::put_limits(&self.name, &VHostLimits::default()));
                changes.push(persist::delete_vhost(&self.name));
            }
        }
        self.write_ahead(changes)?;
        self.deleted.store(true, Ordering::Release);
        let mut topo = self.topology.write();
        let queues: Vec<Arc<Queue>> = topo.queues.values().cloned().collect();
        for q in &queues {
            remove_queue(&mut topo, q);
        }
        topo.exchanges.clear();
        self.policies.write().clear();
        Ok(())
    }
}
