//! Matching for headers exchanges.
//!
//! A headers exchange ignores the routing key and instead compares the
//! message's `headers` table with each binding's arguments. The `x-match`
//! binding argument chooses between requiring all or any of the binding's
//! keys to match, and whether keys starting with `x-` take part.
//!
//! RabbitMQ's behaviour is reproduced exactly, including its corner cases,
//! because clients observe them:
//!
//! * Values compare like Erlang's `==` on RabbitMQ's decoded field values:
//!   integers of every width (and timestamps, which decode to integers)
//!   compare numerically with each other and with floats; long strings and
//!   byte arrays (both decoded to binaries) compare by bytes. Inside nested
//!   tables and arrays the field *type* is part of the decoded value, so
//!   there `I32(1)` and `U8(1)` differ.
//! * RabbitMQ walks the key-sorted binding arguments and key-sorted headers
//!   in one merge pass. With duplicate keys, that pass pairs them up in
//!   order rather than searching, so we use the same merge.
//! * `x-match` itself is never compared; other `x-` keys are compared only
//!   in the `all-with-x` / `any-with-x` modes. The prefix test is
//!   case-sensitive (`X-Foo` is an ordinary key).

use std::cmp::Ordering;

use warren_amqp::{FieldTable, FieldValue};

/// The binding argument that selects the match mode.
const X_MATCH: &str = "x-match";

/// How a headers binding combines its per-key comparisons (`x-match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XMatch {
    /// Every non-`x-` binding key must be present with an equal value.
    #[default]
    All,
    /// At least one non-`x-` binding key must be present with an equal value.
    Any,
    /// Like [`XMatch::All`], but `x-` keys (other than `x-match`) count too.
    AllWithX,
    /// Like [`XMatch::Any`], but `x-` keys (other than `x-match`) count too.
    AnyWithX,
}

impl XMatch {
    fn requires_all(self) -> bool {
        matches!(self, XMatch::All | XMatch::AllWithX)
    }

    fn compares_x_keys(self) -> bool {
        matches!(self, XMatch::AllWithX | XMatch::AnyWithX)
    }

    fn from_bytes(value: &[u8]) -> Option<Self> {
        match value {
            b"all" => Some(XMatch::All),
            b"any" => Some(XMatch::Any),
            b"all-with-x" => Some(XMatch::AllWithX),
            b"any-with-x" => Some(XMatch::AnyWithX),
            _ => None,
        }
    }
}

/// The first `x-match` argument, as RabbitMQ's `table_lookup` finds it.
fn x_match_arg(args: &FieldTable) -> Option<&FieldValue> {
    args.iter().find(|(k, _)| k == X_MATCH).map(|(_, v)| v)
}

/// Validates the `x-match` binding argument, for use when a binding is
/// created. An absent `x-match` means [`XMatch::All`].
///
/// The error text is RabbitMQ's, without the `PRECONDITION_FAILED - `
/// prefix; the caller should close the channel with 406 and that text.
pub fn parse_x_match(args: &FieldTable) -> Result<XMatch, String> {
    match x_match_arg(args) {
        None => Ok(XMatch::All),
        Some(FieldValue::LongString(s)) => XMatch::from_bytes(s).ok_or_else(|| {
            format!(
                "Invalid x-match field value {}; expected all, any, all-with-x, or any-with-x",
                erlang_binary(s)
            )
        }),
        Some(other) => Err(format!(
            "Invalid x-match field type {} (value {}); expected longstr",
            other.type_name(),
            erlang_value(other)
        )),
    }
}

/// Routing-time reading of `x-match`: RabbitMQ falls back to `all` for an
/// unrecognised value (bindings made before it validated them may exist).
fn x_match_lenient(args: &FieldTable) -> XMatch {
    match x_match_arg(args) {
        Some(FieldValue::LongString(s)) => XMatch::from_bytes(s).unwrap_or_default(),
        _ => XMatch::All,
    }
}

/// Message headers sorted by key, ready to be matched against many bindings.
///
/// Sorting once per message instead of once per binding matters for headers
/// exchanges with many bindings; [`headers_match`] is the one-shot form.
#[derive(Debug, Clone)]
pub struct SortedHeaders<'a>(Vec<(&'a str, &'a FieldValue)>);

impl<'a> SortedHeaders<'a> {
    /// Prepares `headers`; `None` (no headers property) acts as an empty table.
    pub fn new(headers: Option<&'a FieldTable>) -> Self {
        SortedHeaders(sorted_entries(headers.into_iter().flat_map(|t| t.iter())))
    }
}

/// Stable sort by key bytes, matching Erlang's `lists:keysort` on binaries;
/// stability decides which of several duplicate keys is paired first.
fn sorted_entries<'a>(
    entries: impl Iterator<Item = &'a (String, FieldValue)>,
) -> Vec<(&'a str, &'a FieldValue)> {
    let mut v: Vec<(&str, &FieldValue)> = entries.map(|(k, v)| (k.as_str(), v)).collect();
    v.sort_by(|a, b| a.0.cmp(b.0));
    v
}

/// Does a message with `message_headers` match a headers binding with
/// `binding_args`? `None` headers behave as an empty table.
pub fn headers_match(binding_args: &FieldTable, message_headers: Option<&FieldTable>) -> bool {
    headers_match_sorted(binding_args, &SortedHeaders::new(message_headers))
}

/// [`headers_match`] against headers already prepared with [`SortedHeaders`].
pub fn headers_match_sorted(binding_args: &FieldTable, headers: &SortedHeaders<'_>) -> bool {
    let mode = x_match_lenient(binding_args);
    let pattern = sorted_entries(binding_args.iter().filter(|(k, _)| {
        // Dropping ignored keys up front is equivalent to RabbitMQ skipping
        // them during the merge: skipping consumes no header and changes no
        // match state.
        k != X_MATCH && (mode.compares_x_keys() || !k.starts_with("x-"))
    }));
    let data = &headers.0;

    let (mut all_matched, mut any_matched) = (true, false);
    let (mut p, mut d) = (0, 0);
    while let Some(&(pk, pv)) = pattern.get(p) {
        // Stop as soon as the outcome is decided.
        if mode.requires_all() && !all_matched {
            return false;
        }
        if !mode.requires_all() && any_matched {
            return true;
        }
        let Some(&(dk, dv)) = data.get(d) else {
            // Binding keys remain but the headers are exhausted.
            all_matched = false;
            break;
        };
        match pk.cmp(dk) {
            // Header not mentioned by the binding.
            Ordering::Greater => d += 1,
            // Binding key absent from the headers.
            Ordering::Less => {
                all_matched = false;
                p += 1;
            }
            Ordering::Equal => {
                // A void binding value only asks for the key to be present.
                if matches!(pv, FieldValue::Void) || erlang_eq(pv, dv) {
                    any_matched = true;
                } else {
                    all_matched = false;
                }
                p += 1;
                d += 1;
            }
        }
    }
    if mode.requires_all() {
        all_matched
    } else {
        any_matched
    }
}

/// A field value as RabbitMQ's decoder represents it, which is what Erlang's
/// `==` actually sees.
enum Term<'a> {
    Int(i128),
    Float(f64),
    Binary(&'a [u8]),
    Bool(bool),
    Decimal(u8, u32),
    Undefined,
    /// Tables decode to lists of `{Name, Type, Value}`.
    Table(&'a FieldTable),
    /// Arrays decode to lists of `{Type, Value}`.
    Array(&'a [FieldValue]),
}

fn term(v: &FieldValue) -> Term<'_> {
    match v {
        FieldValue::Bool(b) => Term::Bool(*b),
        FieldValue::I8(n) => Term::Int((*n).into()),
        FieldValue::U8(n) => Term::Int((*n).into()),
        FieldValue::I16(n) => Term::Int((*n).into()),
        FieldValue::U16(n) => Term::Int((*n).into()),
        FieldValue::I32(n) => Term::Int((*n).into()),
        FieldValue::U32(n) => Term::Int((*n).into()),
        FieldValue::I64(n) => Term::Int((*n).into()),
        FieldValue::Timestamp(n) => Term::Int((*n).into()),
        FieldValue::F32(f) => Term::Float((*f).into()),
        FieldValue::F64(f) => Term::Float(*f),
        FieldValue::Decimal { scale, value } => Term::Decimal(*scale, *value),
        FieldValue::LongString(s) | FieldValue::ByteArray(s) => Term::Binary(s),
        FieldValue::Array(a) => Term::Array(a),
        FieldValue::Table(t) => Term::Table(t),
        FieldValue::Void => Term::Undefined,
    }
}

/// Erlang `==` between two decoded field values (type tags not compared).
fn erlang_eq(a: &FieldValue, b: &FieldValue) -> bool {
    match (term(a), term(b)) {
        (Term::Int(x), Term::Int(y)) => x == y,
        (Term::Float(x), Term::Float(y)) => x == y,
        (Term::Int(i), Term::Float(f)) | (Term::Float(f), Term::Int(i)) => int_eq_float(i, f),
        (Term::Binary(x), Term::Binary(y)) => x == y,
        (Term::Bool(x), Term::Bool(y)) => x == y,
        (Term::Decimal(s1, v1), Term::Decimal(s2, v2)) => s1 == s2 && v1 == v2,
        (Term::Undefined, Term::Undefined) => true,
        (Term::Table(x), Term::Table(y)) => {
            x.0.len() == y.0.len()
                && x.iter()
                    .zip(y.iter())
                    .all(|((kx, vx), (ky, vy))| kx == ky && typed_eq(vx, vy))
        }
        (Term::Array(x), Term::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(vx, vy)| typed_eq(vx, vy))
        }
        // Both decode to lists; only the empty lists are equal.
        (Term::Table(t), Term::Array(a)) | (Term::Array(a), Term::Table(t)) => {
            t.0.is_empty() && a.is_empty()
        }
        _ => false,
    }
}

/// Equality of nested elements, where the decoded form carries the type tag
/// (`{signedint, 1}` vs `{unsignedbyte, 1}`), so the variants must agree.
fn typed_eq(a: &FieldValue, b: &FieldValue) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b) && erlang_eq(a, b)
}

/// Erlang compares an integer and a float by value. Its conversion rules
/// amount to exact mathematical equality, which we compute directly (a plain
/// `i as f64 == f` would round large integers and report false matches).
fn int_eq_float(i: i128, f: f64) -> bool {
    // Every field integer fits in [-2^63, 2^64), so a float outside that
    // range (or non-integral, or NaN/inf) cannot equal it; inside it, the
    // float is an integer exactly representable as i128.
    const LIMIT: f64 = 18_446_744_073_709_551_616.0; // 2^64
    f.fract() == 0.0 && f.abs() < LIMIT && f as i128 == i
}

/// Approximates Erlang's `~tp` rendering of a decoded value, enough for
/// error messages (nested values are abbreviated).
fn erlang_value(v: &FieldValue) -> String {
    match term(v) {
        Term::Int(n) => n.to_string(),
        Term::Float(f) => format!("{f:?}"),
        Term::Binary(b) => erlang_binary(b),
        Term::Bool(b) => b.to_string(),
        Term::Decimal(s, n) => format!("{{{s},{n}}}"),
        Term::Undefined => "undefined".to_owned(),
        Term::Table(t) if t.0.is_empty() => "[]".to_owned(),
        Term::Array([]) => "[]".to_owned(),
        Term::Table(_) | Term::Array(_) => "[...]".to_owned(),
    }
}

/// Renders bytes like Erlang's `~tp`: `<<"text">>` when printable UTF-8,
/// otherwise a list of byte values such as `<<0,255>>`.
fn erlang_binary(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => {
            let escaped = s.replace('\\', "\\\\").replace('"', "\\\"");
            format!("<<\"{escaped}\">>")
        }
        _ => {
            let parts: Vec<String> = bytes.iter().map(u8::to_string).collect();
            format!("<<{}>>", parts.join(","))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use FieldValue::*;

    fn s(v: &str) -> FieldValue {
        LongString(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn x(v: &[u8]) -> FieldValue {
        ByteArray(Bytes::copy_from_slice(v))
    }

    fn table(pairs: &[(&str, FieldValue)]) -> FieldTable {
        FieldTable(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    fn hm(args: &[(&str, FieldValue)], headers: Option<&[(&str, FieldValue)]>) -> bool {
        let headers = headers.map(table);
        headers_match(&table(args), headers.as_ref())
    }

    /// One binding key `a` with value `bound`, one header `a` with `sent`.
    fn value_match(bound: FieldValue, sent: FieldValue) -> bool {
        hm(&[("a", bound)], Some(&[("a", sent)]))
    }

    #[test]
    fn parse_x_match_modes() {
        assert_eq!(parse_x_match(&table(&[])), Ok(XMatch::All));
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("all"))])),
            Ok(XMatch::All)
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("any"))])),
            Ok(XMatch::Any)
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("all-with-x"))])),
            Ok(XMatch::AllWithX)
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("any-with-x"))])),
            Ok(XMatch::AnyWithX)
        );
        // The first x-match wins, as with RabbitMQ's table lookup.
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("any")), ("x-match", s("bogus"))])),
            Ok(XMatch::Any)
        );
    }

    /// Texts as RabbitMQ 3.10 sends them (after "PRECONDITION_FAILED - ").
    #[test]
    fn parse_x_match_errors_use_rabbitmq_text() {
        assert_eq!(
            parse_x_match(&table(&[("x-match", s("ALL"))])),
            Err("Invalid x-match field value <<\"ALL\">>; expected all, any, all-with-x, or any-with-x".to_owned())
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", I32(1))])),
            Err("Invalid x-match field type signedint (value 1); expected longstr".to_owned())
        );
        assert_eq!(
            parse_x_match(&table(&[("x-match", x(b"any"))])),
            Err(
                "Invalid x-match field type binary (value <<\"any\">>); expected longstr"
                    .to_owned()
            )
        );
        assert!(parse_x_match(&table(&[(
            "x-match",
            LongString(Bytes::from_static(&[0, 255]))
        )]))
        .is_err_and(|e| e.contains("<<0,255>>")));
    }

    #[test]
    fn invalid_x_match_routes_as_all() {
        let args = [("x-match", s("bogus")), ("a", I32(1)), ("b", I32(2))];
        assert!(!hm(&args, Some(&[("a", I32(1))])));
        assert!(hm(&args, Some(&[("a", I32(1)), ("b", I32(2))])));
        let args = [("x-match", I32(7)), ("a", I32(1))];
        assert!(hm(&args, Some(&[("a", I32(1))])));
    }

    #[test]
    fn all_mode() {
        let args = [("a", I32(1)), ("b", s("x")), ("c", Void)];
        assert!(hm(
            &args,
            Some(&[("c", U8(0)), ("z", I32(1)), ("b", x(b"x")), ("a", I64(1))])
        ));
        assert!(!hm(
            &args,
            Some(&[("c", U8(0)), ("b", x(b"y")), ("a", I64(1))])
        ));
        assert!(!hm(&args, Some(&[("a", I32(1)), ("b", s("x"))])));
        assert!(!hm(&args, None));
        // Explicit "all" behaves the same as the default.
        let mut explicit = args.to_vec();
        explicit.push(("x-match", s("all")));
        assert!(!hm(&explicit, Some(&[("a", I32(1))])));
    }

    #[test]
    fn all_with_no_comparable_keys_matches_everything() {
        assert!(hm(&[], None));
        assert!(hm(&[], Some(&[("a", I32(1))])));
        assert!(hm(&[("x-match", s("all"))], None));
        assert!(hm(
            &[("x-match", s("all")), ("x-foo", s("bar"))],
            Some(&[("a", I32(1))])
        ));
        assert!(hm(&[("x-match", s("all-with-x"))], None));
    }

    #[test]
    fn any_mode() {
        let args = [("x-match", s("any")), ("a", I32(1)), ("b", s("x"))];
        assert!(hm(&args, Some(&[("b", x(b"y")), ("a", I64(1))])));
        assert!(!hm(&args, Some(&[("b", x(b"y")), ("a", I64(2))])));
        assert!(!hm(&args, None));
        let with_void = [("x-match", s("any")), ("a", Void), ("b", I32(1))];
        assert!(hm(&with_void, Some(&[("a", I32(9))])));
    }

    #[test]
    fn any_with_no_comparable_keys_matches_nothing() {
        assert!(!hm(&[("x-match", s("any"))], Some(&[("x-foo", s("bar"))])));
        assert!(!hm(
            &[("x-match", s("any")), ("x-foo", s("bar"))],
            Some(&[("x-foo", s("bar"))])
        ));
        // x-match is never compared, even in the with-x modes.
        assert!(!hm(
            &[("x-match", s("any-with-x"))],
            Some(&[("x-match", s("any-with-x"))])
        ));
    }

    #[test]
    fn with_x_modes_compare_x_keys() {
        let all_x = [("x-match", s("all-with-x")), ("x-foo", s("bar"))];
        assert!(hm(&all_x, Some(&[("x-foo", s("bar"))])));
        assert!(!hm(&all_x, Some(&[("a", I32(1))])));
        // x-match is not required to be in the headers.
        assert!(hm(
            &[("x-match", s("all-with-x")), ("a", I32(1))],
            Some(&[("a", I32(1))])
        ));
        let any_x = [
            ("x-match", s("any-with-x")),
            ("x-foo", s("bar")),
            ("a", I32(2)),
        ];
        assert!(hm(&any_x, Some(&[("x-foo", s("bar"))])));
        assert!(!hm(&any_x, Some(&[("x-foo", s("baz"))])));
    }

    #[test]
    fn x_prefix_is_case_sensitive_and_exact() {
        let args = [("x-match", s("all")), ("x-", I32(1)), ("X-Up", I32(1))];
        assert!(!hm(&args, Some(&[("b", I32(1))])));
        assert!(hm(&args, Some(&[("X-Up", I32(1))])));
    }

    #[test]
    fn void_binding_value_checks_presence() {
        assert!(value_match(Void, s("whatever")));
        assert!(value_match(Void, Void));
        assert!(!hm(&[("a", Void)], Some(&[("b", Void)])));
        assert!(!value_match(I32(1), Void));
    }

    #[test]
    fn integers_compare_across_widths() {
        let sent = [
            I8(5),
            U8(5),
            I16(5),
            U16(5),
            I32(5),
            U32(5),
            I64(5),
            Timestamp(5),
        ];
        for a in &sent {
            for b in &sent {
                assert!(value_match(a.clone(), b.clone()), "{a:?} {b:?}");
            }
        }
        assert!(!value_match(I32(-1), U32(u32::MAX)));
        assert!(!value_match(I8(-1), U8(255)));
        assert!(value_match(I64(i64::MIN), I64(i64::MIN)));
        assert!(value_match(Timestamp(u64::MAX), Timestamp(u64::MAX)));
        assert!(!value_match(Timestamp(u64::MAX), I64(-1)));
    }

    #[test]
    fn floats_compare_numerically() {
        assert!(value_match(I32(5), F64(5.0)));
        assert!(value_match(I32(5), F32(5.0)));
        assert!(value_match(F64(5.0), U8(5)));
        assert!(!value_match(I32(5), F64(5.5)));
        assert!(value_match(F32(0.5), F64(0.5)));
        // 0.1f32 widened to f64 is not 0.1f64.
        assert!(!value_match(F32(0.1), F64(0.1)));
        assert!(value_match(F64(0.0), F64(-0.0)));
        assert!(value_match(I32(0), F64(-0.0)));
        // Exact comparison: no rounding of large integers.
        let two_53 = 9_007_199_254_740_992_i64;
        assert!(value_match(I64(two_53), F64(two_53 as f64)));
        assert!(!value_match(I64(two_53 + 1), F64(two_53 as f64)));
        assert!(value_match(I64(i64::MIN), F64(-(2f64.powi(63)))));
        assert!(value_match(Timestamp(1 << 63), F64(2f64.powi(63))));
        assert!(!value_match(
            Timestamp(u64::MAX),
            F64(1.8446744073709552e19)
        ));
        assert!(!value_match(I64(0), F64(f64::NAN)));
        assert!(!value_match(F64(f64::NAN), F64(f64::NAN)));
        assert!(!value_match(I64(i64::MAX), F64(f64::INFINITY)));
    }

    #[test]
    fn other_kinds_do_not_cross_compare() {
        assert!(!value_match(Bool(true), U8(1)));
        assert!(value_match(Bool(true), Bool(true)));
        assert!(!value_match(Bool(false), Bool(true)));
        assert!(!value_match(I32(5), Decimal { scale: 0, value: 5 }));
        assert!(!value_match(I32(5), s("5")));
        assert!(!value_match(Bool(true), s("true")));
        assert!(!value_match(s(""), Void));
        assert!(!value_match(
            Decimal {
                scale: 2,
                value: 500
            },
            Decimal {
                scale: 1,
                value: 50
            }
        ));
        assert!(value_match(
            Decimal {
                scale: 2,
                value: 500
            },
            Decimal {
                scale: 2,
                value: 500
            }
        ));
    }

    #[test]
    fn strings_and_byte_arrays_compare_by_bytes() {
        assert!(value_match(s("hi"), s("hi")));
        assert!(!value_match(s("hi"), s("ho")));
        assert!(value_match(s("hi"), x(b"hi")));
        assert!(value_match(x(b"\0\xff"), x(b"\0\xff")));
    }

    #[test]
    fn nested_values_compare_with_their_types() {
        let t = |pairs: &[(&str, FieldValue)]| Table(table(pairs));
        assert!(value_match(t(&[]), t(&[])));
        assert!(value_match(t(&[("k", I32(1))]), t(&[("k", I32(1))])));
        assert!(!value_match(t(&[("k", I32(1))]), t(&[("k", U8(1))])));
        assert!(!value_match(t(&[("k", I32(1))]), t(&[("j", I32(1))])));
        assert!(!value_match(
            t(&[("k", I32(1))]),
            t(&[("k", I32(1)), ("j", I32(1))])
        ));
        // Nested tables are not sorted: order matters.
        assert!(!value_match(
            t(&[("k", I32(1)), ("j", I32(2))]),
            t(&[("j", I32(2)), ("k", I32(1))])
        ));
        assert!(value_match(
            Array(vec![I32(1), s("x")]),
            Array(vec![I32(1), s("x")])
        ));
        assert!(!value_match(Array(vec![I32(1)]), Array(vec![U8(1)])));
        assert!(!value_match(Array(vec![s("x")]), Array(vec![x(b"x")])));
        assert!(!value_match(Array(vec![I32(1)]), Array(vec![])));
        assert!(value_match(Array(vec![Void]), Array(vec![Void])));
        // Nested float/int equality still needs equal types; same-typed
        // floats compare numerically.
        assert!(!value_match(Array(vec![F64(1.0)]), Array(vec![I64(1)])));
        assert!(value_match(Array(vec![F64(0.0)]), Array(vec![F64(-0.0)])));
        assert!(value_match(
            t(&[("k", Array(vec![t(&[("z", Bool(true))])]))]),
            t(&[("k", Array(vec![t(&[("z", Bool(true))])]))])
        ));
        // An empty table and an empty array both decode to [].
        assert!(value_match(t(&[]), Array(vec![])));
        assert!(value_match(Array(vec![]), t(&[])));
        assert!(!value_match(t(&[("k", I32(1))]), Array(vec![I32(1)])));
    }

    #[test]
    fn duplicate_keys_pair_up_in_merge_order() {
        // Only the first duplicate header meets the binding key.
        assert!(!hm(&[("a", I32(2))], Some(&[("a", I32(1)), ("a", I32(2))])));
        assert!(hm(&[("a", I32(2))], Some(&[("a", I32(2)), ("a", I32(1))])));
        let any = [("x-match", s("any")), ("a", I32(2))];
        assert!(!hm(&any, Some(&[("a", I32(1)), ("a", I32(2))])));
        // A duplicated binding key needs a duplicated header.
        assert!(!hm(&[("a", I32(2)), ("a", I32(2))], Some(&[("a", I32(2))])));
        assert!(hm(
            &[("a", I32(2)), ("a", I32(2))],
            Some(&[("a", I32(2)), ("a", I32(2))])
        ));
        let any = [("x-match", s("any")), ("a", I32(1)), ("a", I32(2))];
        assert!(!hm(&any, Some(&[("a", I32(2))])));
    }

    #[test]
    fn sorted_headers_can_be_reused() {
        let headers = table(&[("b", I32(2)), ("a", I32(1))]);
        let prepared = SortedHeaders::new(Some(&headers));
        assert!(headers_match_sorted(&table(&[("a", I32(1))]), &prepared));
        assert!(headers_match_sorted(&table(&[("b", U16(2))]), &prepared));
        assert!(!headers_match_sorted(&table(&[("c", Void)]), &prepared));
        let empty = SortedHeaders::new(None);
        assert!(headers_match_sorted(&table(&[]), &empty));
        assert!(!headers_match_sorted(&table(&[("a", Void)]), &empty));
    }

    #[test]
    fn keys_sort_bytewise() {
        // Interleaved keys exercise both "skip header" and "missing key".
        let args = [("b", I32(1)), ("d", I32(1)), ("B", I32(1))];
        let headers = [
            ("a", I32(0)),
            ("B", I32(1)),
            ("c", I32(0)),
            ("d", I32(1)),
            ("b", I32(1)),
        ];
        assert!(hm(&args, Some(&headers)));
        assert!(!hm(&args, Some(&headers[..4])));
    }
}
