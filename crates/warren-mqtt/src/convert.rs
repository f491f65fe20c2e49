//! MQTT messages as AMQP messages and back, so that both protocols meet on one exchange:
//! QoS ≥ 1 is `delivery_mode` 2, the publish QoS travels in RabbitMQ's `x-mqtt-publish-qos`
//! header, MQTT 5 user properties are headers, content type is content type, correlation
//! data is `correlation_id`, the response topic is `reply_to` (as a routing key) and the
//! message expiry interval is `expiration` (with `timestamp` to compute what is left).

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use warren_amqp::{BasicProperties, FieldTable, FieldValue, ShortString};
use warren_core::Message;

use crate::codec::{Properties, Publish};
use crate::topic;

/// RabbitMQ's header for the QoS an MQTT client published with.
pub const PUBLISH_QOS_HEADER: &str = "x-mqtt-publish-qos";
/// RabbitMQ's header for the DUP flag of the publish.
pub const DUP_HEADER: &str = "x-mqtt-dup";
/// The publishing MQTT client (for MQTT 5's no-local subscription option).
pub const CLIENT_ID_HEADER: &str = "x-mqtt-client-id";
/// Set when the message was published with the retain flag (retain-as-published).
pub const RETAIN_HEADER: &str = "x-mqtt-retain";
pub const PAYLOAD_FORMAT_HEADER: &str = "x-mqtt-payload-format-indicator";
/// Correlation data that is not a short UTF-8 string travels here, as bytes.
pub const CORRELATION_HEADER: &str = "x-correlation-id";
/// The exact list of MQTT 5 user properties, as pairs, when headers cannot hold it: a key
/// given twice (a header holds one value per key, and MQTT keeps the order, section
/// 3.3.2.3.7) or a key that is one of the headers above.
pub const USER_PROPERTIES_HEADER: &str = "x-mqtt-user-properties";

fn reserved_header(key: &str) -> bool {
    key.starts_with("x-mqtt-") || key == CORRELATION_HEADER
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The AMQP properties of an MQTT publish.
pub fn amqp_properties(
    qos: u8,
    dup: bool,
    retain: bool,
    props: &Properties,
    client_id: &str,
) -> BasicProperties {
    let mut headers = FieldTable::new();
    headers.insert(PUBLISH_QOS_HEADER, FieldValue::I8(qos as i8));
    headers.insert(DUP_HEADER, FieldValue::Bool(dup));
    headers.insert(
        CLIENT_ID_HEADER,
        FieldValue::LongString(Bytes::copy_from_slice(client_id.as_bytes())),
    );
    if retain {
        headers.insert(RETAIN_HEADER, FieldValue::Bool(true));
    }
    if let Some(utf8) = props.payload_format_utf8 {
        headers.insert(PAYLOAD_FORMAT_HEADER, FieldValue::U8(utf8 as u8));
    }
    let text = |s: &str| FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()));
    let exact_list_needed = props.user.iter().enumerate().any(|(i, (k, _))| {
        reserved_header(k) || props.user[..i].iter().any(|(earlier, _)| earlier == k)
    });
    if exact_list_needed {
        let pairs = props
            .user
            .iter()
            .map(|(k, v)| FieldValue::Array(vec![text(k), text(v)]))
            .collect();
        headers.insert(USER_PROPERTIES_HEADER, FieldValue::Array(pairs));
    }
    // AMQP consumers see them as headers, several values of one key as an array.
    for (k, v) in &props.user {
        if reserved_header(k) {
            continue;
        }
        let value = text(v);
        match headers.0.iter_mut().find(|(key, _)| key == k) {
            Some((_, FieldValue::Array(items))) => items.push(value),
            Some((_, existing)) => {
                let first = std::mem::replace(existing, FieldValue::Void);
                *existing = FieldValue::Array(vec![first, value]);
            }
            None => headers.0.push((k.clone(), value)),
        }
    }
    let mut p = BasicProperties {
        delivery_mode: Some(if qos > 0 { 2 } else { 1 }),
        content_type: props.content_type.clone(),
        reply_to: props.response_topic.as_deref().map(topic::to_routing_key),
        ..Default::default()
    };
    if let Some(data) = &props.correlation_data {
        match std::str::from_utf8(data) {
            Ok(s) if s.len() <= 255 => p.correlation_id = Some(s.to_string()),
            _ => headers.insert(
                CORRELATION_HEADER,
                FieldValue::ByteArray(Bytes::copy_from_slice(data)),
            ),
        }
    }
    if let Some(secs) = props.message_expiry {
        p.expiration = Some((secs as u64 * 1000).to_string());
        p.timestamp = Some(now_secs());
    }
    p.headers = Some(headers);
    p
}

/// An MQTT publish as the message the core routes; `routing_key` is
/// [`topic::to_routing_key`] of its topic, which the caller already needed for the
/// permission check.
pub fn to_message(
    exchange: &str,
    routing_key: ShortString,
    publish: &Publish,
    raw: Bytes,
) -> Message {
    Message::new(exchange, routing_key, raw, publish.payload.clone())
}

/// What a delivery needs to know of a message beyond its topic and payload.
#[derive(Debug, Default)]
pub struct Outbound {
    /// The QoS it was published with: MQTT's header, or 1 for an AMQP message (AMQP
    /// gives at-least-once, which is QoS 1; RabbitMQ 3.10 delivers AMQP messages to a QoS 1
    /// subscription at QoS 1 too).
    pub publish_qos: u8,
    pub retain: bool,
    pub publisher: Option<String>,
    /// MQTT 5 properties to send (empty for 3.1.1 sessions).
    pub props: Properties,
}

fn header_string(v: &FieldValue) -> Option<String> {
    match v {
        FieldValue::LongString(b) => std::str::from_utf8(b).ok().map(str::to_string),
        FieldValue::Bool(b) => Some(b.to_string()),
        FieldValue::I8(n) => Some(n.to_string()),
        FieldValue::U8(n) => Some(n.to_string()),
        FieldValue::I16(n) => Some(n.to_string()),
        FieldValue::U16(n) => Some(n.to_string()),
        FieldValue::I32(n) => Some(n.to_string()),
        FieldValue::U32(n) => Some(n.to_string()),
        FieldValue::I64(n) => Some(n.to_string()),
        FieldValue::Timestamp(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads a message's properties for a delivery; `v5` asks for the MQTT 5 properties too.
pub fn outbound(msg: &Message, v5: bool) -> Outbound {
    let mut out = Outbound {
        publish_qos: 1,
        ..Default::default()
    };
    let raw = &msg.properties_raw;
    if raw.len() < 2 || raw[0..2] == [0, 0] {
        return out;
    }
    if !v5 {
        if let Some(headers) = warren_amqp::peek_headers(raw) {
            read_mqtt_headers(&headers, &mut out);
        }
        return out;
    }
    let Ok(p) = BasicProperties::decode(raw) else {
        return out;
    };
    if let Some(headers) = &p.headers {
        read_mqtt_headers(headers, &mut out);
        let exact = match headers.get(USER_PROPERTIES_HEADER) {
            Some(FieldValue::Array(pairs)) => Some(pairs),
            _ => None,
        };
        for pair in exact.into_iter().flatten() {
            if let FieldValue::Array(kv) = pair {
                if let [k, v] = kv.as_slice() {
                    if let (Some(k), Some(v)) = (header_string(k), header_string(v)) {
                        out.props.user.push((k, v));
                    }
                }
            }
        }
        if exact.is_none() {
            for (k, v) in headers.iter() {
                if reserved_header(k) {
                    continue;
                }
                match v {
                    FieldValue::Array(items) => {
                        for item in items {
                            if let Some(s) = header_string(item) {
                                out.props.user.push((k.clone(), s));
                            }
                        }
                    }
                    v => {
                        if let Some(s) = header_string(v) {
                            out.props.user.push((k.clone(), s));
                        }
                    }
                }
            }
        }
        if let Some(FieldValue::ByteArray(b)) = headers.get(CORRELATION_HEADER) {
            out.props.correlation_data = Some(b.to_vec());
        }
        if let Some(FieldValue::U8(f)) = headers.get(PAYLOAD_FORMAT_HEADER) {
            out.props.payload_format_utf8 = Some(*f == 1);
        }
    }
    out.props.content_type = p.content_type;
    if let Some(c) = p.correlation_id {
        out.props.correlation_data = Some(c.into_bytes());
    }
    out.props.response_topic = p.reply_to.as_deref().map(topic::from_routing_key);
    if let Some(ms) = p.expiration.and_then(|e| e.parse::<u64>().ok()) {
        let total = ms.div_ceil(1000);
        let waited = p.timestamp.map_or(0, |t| now_secs().saturating_sub(t));
        out.props.message_expiry = Some(total.saturating_sub(waited).max(1) as u32);
    }
    out
}

fn read_mqtt_headers(headers: &FieldTable, out: &mut Outbound) {
    match headers.get(PUBLISH_QOS_HEADER) {
        Some(FieldValue::I8(q)) => out.publish_qos = (*q).clamp(0, 2) as u8,
        Some(FieldValue::U8(q)) => out.publish_qos = (*q).min(2),
        _ => {}
    }
    if let Some(FieldValue::LongString(id)) = headers.get(CLIENT_ID_HEADER) {
        out.publisher = std::str::from_utf8(id).ok().map(str::to_string);
    }
    out.retain = matches!(headers.get(RETAIN_HEADER), Some(FieldValue::Bool(true)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt5_properties_survive_the_trip_through_amqp() {
        let props = Properties {
            content_type: Some("application/json".into()),
            correlation_data: Some(b"req-1".to_vec()),
            response_topic: Some("replies/me".into()),
            message_expiry: Some(30),
            payload_format_utf8: Some(true),
            // Order kept across keys, a key twice, and keys that name Warren's own headers.
            user: vec![
                ("a".into(), "1".into()),
                ("b".into(), "x".into()),
                ("a".into(), "2".into()),
                ("x-mqtt-dup".into(), "mine".into()),
                ("x-correlation-id".into(), "also mine".into()),
            ],
            ..Default::default()
        };
        let amqp = amqp_properties(2, false, true, &props, "dev");
        assert_eq!(amqp.delivery_mode, Some(2));
        assert_eq!(amqp.reply_to.as_deref(), Some("replies.me"));
        assert_eq!(amqp.expiration.as_deref(), Some("30000"));
        let msg = Message::new("amq.topic", "t", amqp.to_bytes(), Bytes::new());
        let back = outbound(&msg, true);
        assert_eq!(back.publish_qos, 2);
        assert!(back.retain);
        assert_eq!(back.publisher.as_deref(), Some("dev"));
        assert_eq!(back.props.content_type, props.content_type);
        assert_eq!(back.props.correlation_data, props.correlation_data);
        assert_eq!(back.props.response_topic, props.response_topic);
        assert_eq!(back.props.user, props.user);
        assert_eq!(back.props.payload_format_utf8, Some(true));
        assert!(matches!(back.props.message_expiry, Some(29..=30)));
        // Binary correlation data goes through a header.
        let bin = Properties {
            correlation_data: Some(vec![0xFF, 0]),
            ..Default::default()
        };
        let msg = Message::new(
            "amq.topic",
            "t",
            amqp_properties(1, false, false, &bin, "x").to_bytes(),
            Bytes::new(),
        );
        assert_eq!(
            outbound(&msg, true).props.correlation_data,
            Some(vec![0xFF, 0])
        );
    }

    #[test]
    fn amqp_messages_are_qos_1_with_headers_as_user_properties() {
        let mut headers = FieldTable::new();
        headers.insert("k", FieldValue::LongString(Bytes::from_static(b"v")));
        let p = BasicProperties {
            headers: Some(headers),
            correlation_id: Some("c".into()),
            ..Default::default()
        };
        let msg = Message::new("amq.topic", "a.b", p.to_bytes(), Bytes::new());
        let out = outbound(&msg, true);
        assert_eq!(out.publish_qos, 1);
        assert_eq!(out.props.user, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(out.props.correlation_data, Some(b"c".to_vec()));
    }
}
