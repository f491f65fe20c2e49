//! Shared proptest strategies and round-trip checks for the unit tests.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

use crate::error::DecodeError;
use crate::methods::Method;
use crate::table::{FieldTable, FieldValue};

/// Short strings: mixed ASCII and arbitrary chars, always <= 255 bytes.
pub fn arb_shortstr() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::collection::vec(proptest::char::range('!', '~'), 0..24)
            .prop_map(String::from_iter),
        proptest::collection::vec(any::<char>(), 0..16).prop_map(String::from_iter),
    ]
}

pub fn arb_longstr() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn arb_f32() -> impl Strategy<Value = f32> {
    any::<u32>().prop_map(|b| {
        let f = f32::from_bits(b);
        if f.is_nan() {
            0.5
        } else {
            f
        }
    })
}

fn arb_f64() -> impl Strategy<Value = f64> {
    any::<u64>().prop_map(|b| {
        let f = f64::from_bits(b);
        if f.is_nan() {
            -0.25
        } else {
            f
        }
    })
}

/// Every scalar field value type.
pub fn arb_scalar_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        any::<bool>().prop_map(FieldValue::Bool),
        any::<i8>().prop_map(FieldValue::I8),
        any::<u8>().prop_map(FieldValue::U8),
        any::<i16>().prop_map(FieldValue::I16),
        any::<u16>().prop_map(FieldValue::U16),
        any::<i32>().prop_map(FieldValue::I32),
        any::<u32>().prop_map(FieldValue::U32),
        any::<i64>().prop_map(FieldValue::I64),
        arb_f32().prop_map(FieldValue::F32),
        arb_f64().prop_map(FieldValue::F64),
        (any::<u8>(), any::<u32>()).prop_map(|(scale, value)| FieldValue::Decimal { scale, value }),
        arb_longstr().prop_map(FieldValue::LongString),
        arb_longstr().prop_map(FieldValue::ByteArray),
        any::<u64>().prop_map(FieldValue::Timestamp),
        Just(FieldValue::Void),
    ]
}

/// Any field value, including nested arrays and tables.
pub fn arb_value() -> impl Strategy<Value = FieldValue> {
    arb_scalar_value().prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(FieldValue::Array),
            proptest::collection::vec((arb_shortstr(), inner), 0..6)
                .prop_map(|e| FieldValue::Table(FieldTable(e))),
        ]
    })
}

/// Any table (duplicate keys allowed: decode preserves them).
pub fn arb_table() -> impl Strategy<Value = FieldTable> {
    proptest::collection::vec((arb_shortstr(), arb_value()), 0..6).prop_map(FieldTable)
}

/// Encode, decode, compare; re-encode and compare bytes; check every strict
/// prefix reports `Truncated`, and that trailing bytes are ignored.
pub fn check_method_roundtrip(method: &Method) -> Result<(), TestCaseError> {
    let mut out = BytesMut::new();
    method.encode(&mut out);
    let decoded = Method::decode(&out).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&decoded, method);
    let mut again = BytesMut::new();
    decoded.encode(&mut again);
    prop_assert_eq!(&again[..], &out[..]);
    for cut in 0..out.len() {
        prop_assert_eq!(Method::decode(&out[..cut]), Err(DecodeError::Truncated));
    }
    let mut trailing = out.clone();
    trailing.extend_from_slice(b"\x00\xffjunk");
    prop_assert_eq!(&Method::decode(&trailing).unwrap(), method);
    Ok(())
}
