//! Deliveries from the session's queues to the client: the topic back from the routing
//! key, the QoS (the lower of the publish's and the best matching subscription's), the
//! subscription options (no local, retain as published, subscription identifiers), packet
//! identifiers for QoS 1 and 2, and the client's maximum packet size.

use super::*;
use crate::codec::Publish;
use crate::convert;
use crate::topic;

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    /// A free packet identifier for a delivery, if any.
    pub(super) fn take_pid(&mut self) -> Option<u16> {
        let carried = self.hold.slot.carried.lock();
        for _ in 0..u16::MAX {
            let pid = self.next_pid;
            self.next_pid = self.next_pid.checked_add(1).unwrap_or(1);
            if !self.inflight.contains_key(&pid) && !carried.pid_reserved(pid) {
                return Some(pid);
            }
        }
        None
    }

    pub(super) fn deliver(&mut self, d: Delivery) {
        let topic = topic::from_routing_key(&d.msg.routing_key);
        let shared = &*d.consumer_tag != OWN_TAGS[0] && &*d.consumer_tag != OWN_TAGS[1];
        // The subscriptions behind this delivery: those of its queue whose filter matches
        // (a `$` topic reached through an AMQP `#` binding matches none, and is dropped).
        let mut best_qos: Option<u8> = None;
        let mut all_no_local = true;
        let mut rap = false;
        let mut ids: Vec<u32> = Vec::new();
        for s in self.subs.values() {
            if !Arc::ptr_eq(&s.queue, &d.queue) || !topic::matches(&s.filter, &topic) {
                continue;
            }
            best_qos = Some(best_qos.map_or(s.opts.qos, |q| q.max(s.opts.qos)));
            all_no_local &= s.opts.no_local;
            rap |= s.opts.retain_as_published;
            if let Some(id) = s.id {
                ids.push(id);
            }
        }
        let Some(sub_qos) = best_qos else {
            self.drop_delivery(d);
            return;
        };
        let at_most_once = &*d.consumer_tag == OWN_TAGS[0] || sub_qos == 0;
        // A 3.1.1 delivery at QoS 0 uses nothing of the headers (no options, no publish
        // QoS to cap): they are not parsed.
        let info = if self.v5 || !at_most_once {
            convert::outbound(&d.msg, self.v5)
        } else {
            convert::Outbound::default()
        };
        if all_no_local && info.publisher.as_deref() == Some(self.client_id.as_str()) {
            self.drop_delivery(d);
            return;
        }
        let qos = if at_most_once {
            0
        } else {
            sub_qos.min(info.publish_qos)
        };
        let mut props = info.props;
        if self.v5 {
            ids.sort_unstable();
            props.subscription_ids = ids;
        }
        let retain = rap && info.retain && !shared;
        // A message the previous connection sent and got no answer for goes again with
        // its packet identifier (section 4.4).
        let original = if d.entry.redelivered {
            let mut carried = self.hold.slot.carried.lock();
            if carried.resend.is_empty() {
                None
            } else {
                carried
                    .resend
                    .remove(&(d.queue.name().to_string(), d.entry.seq))
            }
        } else {
            None
        };
        let pid = if qos > 0 && original.is_some_and(|p| !self.inflight.contains_key(&p)) {
            original
        } else if qos > 0 {
            match self.take_pid() {
                Some(pid) => Some(pid),
                None => {
                    // Cannot happen under the credit limit; put it back rather than lose it.
                    d.give_back();
                    return;
                }
            }
        } else {
            None
        };
        let publish = Packet::Publish(Publish {
            dup: qos > 0 && d.entry.redelivered,
            qos,
            retain,
            topic,
            pid,
            props,
            payload: d.msg.body.clone(),
        });
        if !self.send_bounded(&publish) {
            self.drop_delivery(d);
            return;
        }
        let credited = !d.no_ack;
        match pid {
            Some(pid) => {
                self.inflight.insert(
                    pid,
                    InFlight {
                        queue: Some(Arc::clone(&d.queue)),
                        entry: (!d.no_ack).then_some(d.entry),
                        credited,
                    },
                );
            }
            None => self.settle(InFlight {
                entry: (!d.no_ack).then_some(d.entry),
                queue: Some(d.queue),
                credited,
            }),
        }
    }

    /// Sends a PUBLISH unless it exceeds the client's maximum packet size (section
    /// 3.1.2.25: such a packet is discarded); answers whether it went.
    pub(super) fn send_bounded(&mut self, publish: &Packet) -> bool {
        let before = self.out.len();
        self.send(publish);
        if self.out.len() - before > self.client_max_packet {
            self.out.truncate(before);
            debug!(client_id = %self.client_id, "delivery over the client's maximum packet size dropped");
            return false;
        }
        true
    }

    /// A delivery the client is not to receive: settled as if it had been taken.
    fn drop_delivery(&mut self, d: Delivery) {
        let credited = !d.no_ack;
        self.settle(InFlight {
            entry: (!d.no_ack).then_some(d.entry),
            queue: Some(d.queue),
            credited,
        });
    }
}
