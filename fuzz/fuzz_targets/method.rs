//! The method decoder: arbitrary method-frame payloads either decode or give a
//! `DecodeError`. What decodes strictly also decodes leniently to the same method, and
//! encoding it and decoding again gives it back. Methods are compared by their encoding:
//! a float NaN in a table argument is not equal to itself.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use warren_amqp::{DecodeError, Method};

fuzz_target!(|data: &[u8]| {
    let lenient = Method::decode(data);
    match Method::decode_strict(data) {
        Ok(method) => {
            let out = encoded(&method);
            assert_eq!(lenient.as_ref().map(encoded), Ok(out.clone()));
            let again = Method::decode_strict(&out).expect("an encoded method decodes");
            assert_eq!(encoded(&again), out);
        }
        Err(DecodeError::TrailingBytes) => assert!(lenient.is_ok()),
        Err(e) => assert_eq!(lenient.err(), Some(e)),
    }
});

fn encoded(method: &Method) -> BytesMut {
    let mut out = BytesMut::new();
    method.encode(&mut out);
    out
}
