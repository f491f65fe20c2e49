//! RabbitMQ's `rabbitmq_channel_*` and `rabbitmq_connection_*` families, aggregated over
//! the channels and connections open at the scrape.

use warren_core::connections::ConnectionSnapshot;
use warren_core::stats::{get, MessageCounts};

use super::exposition::{Exposition, Kind};

/// RabbitMQ's channel and connection families, summed over the channels and connections
/// open now (RabbitMQ 3.10 sums its live channel tables too, so these fall when channels
/// close; the `global` counters are the ones that never do).
pub fn live_channels(e: &mut Exposition, connections: &[ConnectionSnapshot]) {
    let mut counts = MessageCounts::default();
    let (mut consumers, mut unacked, mut unconfirmed, mut uncommitted, mut acks_uncommitted) =
        (0, 0, 0, 0, 0);
    let (mut prefetch, mut recv, mut sent) = (0, 0, 0);
    for c in connections {
        recv += get(&c.state.stats.recv_oct);
        sent += get(&c.state.stats.send_oct);
        for (_, ch) in c.state.channels() {
            counts.add(&ch.counts());
            consumers += get(&ch.consumer_count);
            unacked += get(&ch.messages_unacknowledged);
            unconfirmed += get(&ch.messages_unconfirmed);
            uncommitted += get(&ch.messages_uncommitted);
            acks_uncommitted += get(&ch.acks_uncommitted);
            prefetch += get(&ch.global_prefetch_count);
        }
    }
    let channels: usize = connections.iter().map(|c| c.state.channels().len()).sum();
    for (name, help, value) in [
        ("channel_consumers", "Consumers on a channel", consumers),
        (
            "channel_messages_unacked",
            "Delivered but not yet acknowledged messages",
            unacked,
        ),
        (
            "channel_messages_unconfirmed",
            "Published but not yet confirmed messages",
            unconfirmed,
        ),
        (
            "channel_messages_uncommitted",
            "Messages received in a transaction but not yet committed",
            uncommitted,
        ),
        (
            "channel_acks_uncommitted",
            "Message acknowledgements in a transaction not yet committed",
            acks_uncommitted,
        ),
        (
            "channel_prefetch",
            "Total limit of unacknowledged messages for all consumers on a channel",
            prefetch,
        ),
        (
            "connection_channels",
            "Channels on a connection",
            channels as u64,
        ),
    ] {
        e.single(name, Kind::Gauge, help, value);
    }
    for (name, help, value) in [
        ("channel_messages_published_total", "Total number of messages published into an exchange on a channel", counts.publish),
        ("channel_messages_confirmed_total", "Total number of messages published into an exchange and confirmed on the channel", counts.confirm),
        ("channel_messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", counts.return_unroutable),
        ("channel_messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", counts.drop_unroutable),
        ("channel_get_ack_total", "Total number of messages fetched with basic.get in manual acknowledgement mode", counts.get),
        ("channel_get_total", "Total number of messages fetched with basic.get in automatic acknowledgement mode", counts.get_no_ack),
        ("channel_messages_delivered_ack_total", "Total number of messages delivered to consumers in manual acknowledgement mode", counts.deliver),
        ("channel_messages_delivered_total", "Total number of messages delivered to consumers in automatic acknowledgement mode", counts.deliver_no_ack),
        ("channel_messages_redelivered_total", "Total number of messages redelivered to consumers", counts.redeliver),
        ("channel_messages_acked_total", "Total number of messages acknowledged by consumers", counts.ack),
        ("channel_get_empty_total", "Total number of times basic.get operations fetched no message", counts.get_empty),
        ("connection_incoming_bytes_total", "Total number of bytes received on a connection", recv),
        ("connection_outgoing_bytes_total", "Total number of bytes sent on a connection", sent),
    ] {
        e.single(name, Kind::Counter, help, value);
    }
}
