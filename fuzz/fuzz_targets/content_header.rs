//! Content headers: the header frame decoder, the property list decoder, the headers check
//! run on every publish (`check_headers`, a scan) and the single-property peeks used on the
//! hot path all take arbitrary bytes without panicking, and agree with each other
//! (properties compared by encoding: a float NaN in the headers is not equal to itself).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use warren_amqp::properties::check_headers;
use warren_amqp::{
    peek_delivery_mode, peek_expiration, peek_headers, peek_priority, BasicProperties,
    ContentHeader, FieldTable,
};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = ContentHeader::decode(Bytes::copy_from_slice(data)) {
        let _ = header.body_size;
    }
    let raw = data;
    let _ = (
        peek_delivery_mode(raw),
        peek_priority(raw),
        peek_expiration(raw),
    );
    let headers_ok = check_headers(raw);
    match BasicProperties::decode(raw) {
        Ok(props) => {
            assert_eq!(
                headers_ok,
                Ok(()),
                "check_headers refused decodable properties"
            );
            assert_eq!(
                peek_headers(raw).map(|t| table_bytes(&t)),
                props.headers.as_ref().map(table_bytes)
            );
            assert_eq!(peek_delivery_mode(raw), props.delivery_mode);
            assert_eq!(peek_priority(raw), props.priority);
            assert_eq!(peek_expiration(raw), props.expiration);
            let encoded = props.to_bytes();
            let again = BasicProperties::decode(&encoded).expect("encoded properties decode");
            assert_eq!(again.to_bytes(), encoded);
        }
        // Headers the scan took may still fail the full decode (UTF-8 in a key); nothing
        // else to compare.
        Err(_) => {}
    }
});

fn table_bytes(table: &FieldTable) -> BytesMut {
    let mut out = BytesMut::new();
    table.encode(&mut out);
    out
}
