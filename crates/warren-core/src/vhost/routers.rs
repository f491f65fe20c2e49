//! How a vhost serves its queues and delayed exchanges: due delayed messages are routed as
//! the exchange's `x-delayed-type`, expired queues are deleted, and dead letters are
//! republished through their dead-letter exchanges (with RabbitMQ's cycle rules).

use std::sync::Arc;

use warren_amqp::FieldValue;

use super::{VHost, MAX_DEAD_LETTER_CHAIN};
use crate::clock::unix_secs;
use crate::dead_letter::{is_cycle, DeadLetter};
use crate::delayed::DelayedRouter;
use crate::message::Message;
use crate::queue::{DeadLetterRouter, Queue};

impl DelayedRouter for VHost {
    fn route_due(&self, exchange: &str, msg: Arc<Message>) {
        self.route_delayed(exchange, msg);
    }
}

impl DeadLetterRouter for VHost {
    fn queue_expired(&self, queue: &Arc<Queue>) {
        self.delete_queue_instance(queue);
    }

    /// Republishes dead letters through their dead-letter exchanges. Iterative, so a chain
    /// of length-limited queues dropping into each other cannot grow the stack.
    fn route_dead_letters(&self, letters: Vec<DeadLetter>) {
        let mut work: std::collections::VecDeque<DeadLetter> = letters.into();
        let mut handled = 0usize;
        let mut queues = Vec::new();
        while let Some(letter) = work.pop_front() {
            handled += 1;
            if handled > MAX_DEAD_LETTER_CHAIN {
                tracing::warn!(vhost = %self.name, "dead-letter chain too long; dropping the rest");
                return;
            }
            let msg = Arc::new(letter.republished(unix_secs()));
            let headers = warren_amqp::peek_headers(&msg.properties_raw);
            queues.clear();
            let routed = self.route(&msg, &mut queues);
            if let Err(e) = routed {
                tracing::debug!(vhost = %self.name, queue = %letter.queue, error = %e.text, "dead letter dropped: no such exchange");
                continue;
            }
            if letter.reason != crate::dead_letter::DeathReason::Rejected {
                let deaths = match headers.as_ref().and_then(|h| h.get("x-death")) {
                    Some(FieldValue::Array(items)) => items.clone(),
                    _ => Vec::new(),
                };
                queues.retain(|q| {
                    let cycle = is_cycle(q.name(), &deaths);
                    if cycle {
                        tracing::warn!(vhost = %self.name, queue = %q.name(), "dead-letter cycle detected; message dropped for this queue");
                    }
                    !cycle
                });
            }
            for q in queues.drain(..) {
                // A rejection by the target's own overflow setting just drops the letter.
                q.publish(Arc::clone(&msg));
            }
        }
    }
}
