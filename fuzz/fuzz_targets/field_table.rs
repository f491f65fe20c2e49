//! Field tables: the allocation-free scan (used on message headers, which Warren passes on
//! raw) accepts everything the full decoder accepts and consumes the same bytes; what the
//! decoder builds encodes to a table that decodes back to itself, at its stated length
//! (compared by encoding: a float NaN is not equal to itself).
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_amqp::table::scan_table;
use warren_amqp::{DecodeError, FieldTable};

fuzz_target!(|data: &[u8]| {
    let mut decode_at = data;
    let decoded = FieldTable::decode(&mut decode_at);
    let mut scan_at = data;
    let scanned = scan_table(&mut scan_at);
    match decoded {
        Ok(table) => {
            assert_eq!(scanned, Ok(()), "scan refused a table the decoder took");
            assert_eq!(
                decode_at.len(),
                scan_at.len(),
                "scan and decode consumed differently"
            );
            let mut out = BytesMut::new();
            table.encode(&mut out);
            assert_eq!(out.len(), table.encoded_len());
            let again = FieldTable::decode(&mut &out[..]).expect("an encoded table decodes");
            let mut out_again = BytesMut::new();
            again.encode(&mut out_again);
            assert_eq!(out_again, out);
        }
        // The scan does not check UTF-8 (Warren, like RabbitMQ, passes header bytes on);
        // every other refusal must be the scan's too.
        Err(DecodeError::InvalidUtf8) => {}
        Err(e) => assert!(scanned.is_err(), "decoder refused ({e}) what the scan took"),
    }
});
