//! AMQP field tables and JSON, both ways, as RabbitMQ's management plugin converts them:
//! integers stay integers, strings are UTF-8 (bytes that are not become `\uFFFD`), an empty
//! table is `{}` (never `[]`, which breaks typed clients), and a JSON integer becomes a
//! signed 64-bit AMQP long.

use serde_json::{Map, Value};
use warren_amqp::{FieldTable, FieldValue};

pub fn value_to_json(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(n) => Value::from(*n),
        FieldValue::U8(n) => Value::from(*n),
        FieldValue::I16(n) => Value::from(*n),
        FieldValue::U16(n) => Value::from(*n),
        FieldValue::I32(n) => Value::from(*n),
        FieldValue::U32(n) => Value::from(*n),
        FieldValue::I64(n) => Value::from(*n),
        FieldValue::Timestamp(n) => Value::from(*n),
        FieldValue::F32(f) => Value::from(f64::from(*f)),
        FieldValue::F64(f) => Value::from(*f),
        FieldValue::Decimal { scale, value } => {
            Value::from(f64::from(*value) / 10f64.powi(i32::from(*scale)))
        }
        FieldValue::LongString(b) | FieldValue::ByteArray(b) => {
            Value::String(String::from_utf8_lossy(b).into_owned())
        }
        FieldValue::Array(items) => Value::Array(items.iter().map(value_to_json).collect()),
        FieldValue::Table(t) => table_to_json(t),
        FieldValue::Void => Value::Null,
    }
}

/// A table as a JSON object (`{}` when empty).
pub fn table_to_json(t: &FieldTable) -> Value {
    let mut map = Map::new();
    for (k, v) in t.iter() {
        map.insert(k.clone(), value_to_json(v));
    }
    Value::Object(map)
}

pub fn json_to_value(v: &Value) -> FieldValue {
    match v {
        Value::Null => FieldValue::Void,
        Value::Bool(b) => FieldValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => FieldValue::I64(i),
            None => match n.as_u64() {
                Some(u) => FieldValue::I64(i64::try_from(u).unwrap_or(i64::MAX)),
                None => FieldValue::F64(n.as_f64().unwrap_or(0.0)),
            },
        },
        Value::String(s) => FieldValue::LongString(s.clone().into_bytes().into()),
        Value::Array(items) => FieldValue::Array(items.iter().map(json_to_value).collect()),
        Value::Object(_) => FieldValue::Table(json_to_table(v).unwrap_or_default()),
    }
}

/// A JSON object as a table. Missing (`null`) and an empty array (what some clients send
/// for "no arguments") are the empty table; anything else that is not an object is `None`.
pub fn json_to_table(v: &Value) -> Option<FieldTable> {
    match v {
        Value::Null => Some(FieldTable::default()),
        Value::Array(a) if a.is_empty() => Some(FieldTable::default()),
        Value::Object(map) => {
            let mut t = FieldTable::default();
            for (k, v) in map {
                t.insert(k.clone(), json_to_value(v));
            }
            Some(t)
        }
        _ => None,
    }
}

/// The field `key` of a JSON object, if it is a string.
pub fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// A boolean field as RabbitMQ reads it: `true`/`false`, or the strings "true"/"false".
pub fn bool_field(body: &Value, key: &str) -> Option<bool> {
    match body.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) if s == "true" => Some(true),
        Value::String(s) if s == "false" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_round_trip_and_empty_is_an_object() {
        let v = json!({"x-max-length": 10, "s": "a", "b": true, "n": [1, "x"], "t": {}});
        let t = json_to_table(&v).unwrap();
        assert_eq!(t.get("x-max-length"), Some(&FieldValue::I64(10)));
        assert_eq!(table_to_json(&t), v);
        assert_eq!(table_to_json(&FieldTable::default()), json!({}));
        assert_eq!(json_to_table(&json!([])), Some(FieldTable::default()));
        assert_eq!(json_to_table(&json!("x")), None);
    }
}
