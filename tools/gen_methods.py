#!/usr/bin/env python3
"""Generate crates/warren-amqp/src/methods.rs from the AMQP 0-9-1 spec XML.

Usage:
    python3 tools/gen_methods.py /path/to/amqp0-9-1-rabbit.xml [output.rs]

The output defaults to crates/warren-amqp/src/methods.rs (relative to the
repository root, located from this script's path).  After regenerating, run
`cargo fmt -p warren-amqp` so the committed file stays rustfmt-clean.

The XML is the source of truth for every class, method and field it
defines.  A handful of RabbitMQ extensions that the broker needs are absent
from RabbitMQ's published XML (they only exist in RabbitMQ's JSON codegen
spec); they are declared in EXTRA_METHODS below and merged in.
"""

import os
import sys
import xml.etree.ElementTree as ET

# Methods not present in amqp0-9-1-rabbit.xml but spoken by RabbitMQ clients.
# (class name, class index, method name, method index, content, [(field, primitive type)])
EXTRA_METHODS = [
    ("connection", 10, "blocked", 60, False, [("reason", "shortstr")]),
    ("connection", 10, "unblocked", 61, False, []),
    (
        "connection",
        10,
        "update-secret",
        70,
        False,
        [("new-secret", "longstr"), ("reason", "shortstr")],
    ),
    ("connection", 10, "update-secret-ok", 71, False, []),
    (
        "access",
        30,
        "request",
        10,
        False,
        [
            ("realm", "shortstr"),
            ("exclusive", "bit"),
            ("passive", "bit"),
            ("active", "bit"),
            ("write", "bit"),
            ("read", "bit"),
        ],
    ),
    ("access", 30, "request-ok", 11, False, [("reserved-1", "short")]),
]

# Short strings decoded into an inline string (no heap allocation up to 24 bytes): the
# fields of the one method that arrives with every message.
INLINE_SHORTSTR = {
    ("basic", "publish", "exchange"),
    ("basic", "publish", "routing-key"),
}

RUST_TYPE = {
    "octet": "u8",
    "short": "u16",
    "long": "u32",
    "longlong": "u64",
    "bit": "bool",
    "shortstr": "String",
    "shortstr-inline": "ShortString",
    "longstr": "Bytes",
    "timestamp": "u64",
    "table": "FieldTable",
}

READ_FN = {
    "octet": "wire::read_u8(buf)?",
    "short": "wire::read_u16(buf)?",
    "long": "wire::read_u32(buf)?",
    "longlong": "wire::read_u64(buf)?",
    "shortstr": "wire::read_shortstr(buf)?",
    "shortstr-inline": "wire::read_shortstr_inline(buf)?",
    "longstr": "wire::read_longstr(buf)?",
    "timestamp": "wire::read_u64(buf)?",
    "table": "FieldTable::decode(buf)?",
}

WRITE_FN = {
    "octet": "out.put_u8(self.{f});",
    "short": "out.put_u16(self.{f});",
    "long": "out.put_u32(self.{f});",
    "longlong": "out.put_u64(self.{f});",
    "shortstr": "wire::write_shortstr(out, &self.{f});",
    "shortstr-inline": "wire::write_shortstr(out, &self.{f});",
    "longstr": "wire::write_longstr(out, &self.{f});",
    "timestamp": "out.put_u64(self.{f});",
    "table": "self.{f}.encode(out);",
}

STRATEGY = {
    "octet": "any::<u8>()",
    "short": "any::<u16>()",
    "long": "any::<u32>()",
    "longlong": "any::<u64>()",
    "bit": "any::<bool>()",
    "shortstr": "arb_shortstr()",
    "shortstr-inline": "arb_shortstr().prop_map(ShortString::from)",
    "longstr": "arb_longstr()",
    "timestamp": "any::<u64>()",
    "table": "arb_table()",
}


def camel(name):
    return "".join(part.capitalize() for part in name.split("-"))


def snake(name):
    return name.replace("-", "_")


def field_ident(name):
    if name == "type":
        return "kind"
    if name == "nowait":
        return "no_wait"
    return snake(name)


class Method:
    def __init__(self, cls, cls_index, name, index, content, fields):
        self.cls = cls
        self.cls_index = cls_index
        self.name = name
        self.index = index
        self.content = content
        self.fields = fields  # [(xml name, primitive type)]

    @property
    def rust(self):
        return camel(self.cls) + camel(self.name)

    @property
    def snake(self):
        return snake(self.cls) + "_" + snake(self.name)

    @property
    def dotted(self):
        return self.cls + "." + self.name


def load(xml_path):
    root = ET.parse(xml_path).getroot()
    domains = {d.get("name"): d.get("type") for d in root.findall("domain")}

    def resolve(field):
        t = field.get("type") or field.get("domain")
        seen = set()
        while t in domains and domains[t] != t:
            if t in seen:
                raise SystemExit("domain cycle at " + t)
            seen.add(t)
            t = domains[t]
        if t not in RUST_TYPE:
            raise SystemExit("unknown field type %r" % t)
        return t

    classes = {}
    for c in root.findall("class"):
        cname = c.get("name")
        cidx = int(c.get("index"))
        ms = []
        for m in c.findall("method"):
            fields = [
                (
                    f.get("name"),
                    "shortstr-inline"
                    if (cname, m.get("name"), f.get("name")) in INLINE_SHORTSTR
                    else resolve(f),
                )
                for f in m.findall("field")
            ]
            ms.append(
                Method(
                    cname,
                    cidx,
                    m.get("name"),
                    int(m.get("index")),
                    m.get("content") == "1",
                    fields,
                )
            )
        classes[cname] = (cidx, ms)

    for cname, cidx, mname, midx, content, fields in EXTRA_METHODS:
        entry = classes.setdefault(cname, (cidx, []))
        if entry[0] != cidx:
            raise SystemExit("class index mismatch for " + cname)
        if any(m.name == mname for m in entry[1]):
            continue  # the XML defines it; the XML wins
        entry[1].append(Method(cname, cidx, mname, midx, content, fields))

    methods = []
    for cidx, ms in sorted(classes.values(), key=lambda e: e[0]):
        methods.extend(sorted(ms, key=lambda m: m.index))
    return methods, sorted((v[0], k) for k, v in classes.items())


def gen_struct(m, out):
    w = out.append
    flags = " (carries content)" if m.content else ""
    w("/// `%s` (class %d, method %d)%s." % (m.dotted, m.cls_index, m.index, flags))
    w("#[derive(Debug, Clone, PartialEq, Default)]")
    if not m.fields:
        w("pub struct %s {}" % m.rust)
    else:
        w("pub struct %s {" % m.rust)
        for fname, ftype in m.fields:
            w("    /// `%s` (%s)" % (fname, ftype.replace("-inline", ", held inline")))
            w("    pub %s: %s," % (field_ident(fname), RUST_TYPE[ftype]))
        w("}")
    w("")
    w("impl %s {" % m.rust)
    w("    /// Class id on the wire.")
    w("    pub const CLASS_ID: u16 = %d;" % m.cls_index)
    w("    /// Method id on the wire.")
    w("    pub const METHOD_ID: u16 = %d;" % m.index)
    w("    /// Dotted spec name.")
    w('    pub const NAME: &\'static str = "%s";' % m.dotted)
    w("")
    # decode
    w("    /// Decode the arguments (everything after class-id and method-id).")
    arg = "buf" if m.fields else "_buf"
    w(
        "    pub fn decode_args(%s: &mut &[u8]) -> Result<Self, DecodeError> {" % arg
    )
    bit_pos = None
    for fname, ftype in m.fields:
        ident = field_ident(fname)
        if ftype == "bit":
            if bit_pos is None or bit_pos == 8:
                w("        let bits = wire::read_u8(buf)?;")
                bit_pos = 0
            w("        let %s = bits & 0x%02x != 0;" % (ident, 1 << bit_pos))
            bit_pos += 1
        else:
            bit_pos = None
            w("        let %s = %s;" % (ident, READ_FN[ftype]))
    idents = ", ".join(field_ident(f) for f, _ in m.fields)
    if m.fields:
        w("        Ok(Self { %s })" % idents)
    else:
        w("        Ok(Self {})")
    w("    }")
    w("")
    # encode
    w("    /// Encode the arguments (everything after class-id and method-id).")
    arg = "out" if m.fields else "_out"
    w("    pub fn encode_args(&self, %s: &mut BytesMut) {" % arg)
    groups = []  # list of ("bits", [idents]) or ("field", ident, type)
    for fname, ftype in m.fields:
        ident = field_ident(fname)
        if ftype == "bit":
            if groups and groups[-1][0] == "bits" and len(groups[-1][1]) < 8:
                groups[-1][1].append(ident)
            else:
                groups.append(("bits", [ident]))
        else:
            groups.append(("field", ident, ftype))
    for g in groups:
        if g[0] == "bits":
            parts = " | ".join(
                ("u8::from(self.%s)" % ident)
                if i == 0
                else ("(u8::from(self.%s) << %d)" % (ident, i))
                for i, ident in enumerate(g[1])
            )
            w("        out.put_u8(%s);" % parts)
        else:
            w("        " + WRITE_FN[g[2]].format(f=g[1]))
    w("    }")
    w("}")
    w("")
    w("impl From<%s> for Method {" % m.rust)
    w("    fn from(m: %s) -> Method {" % m.rust)
    w("        Method::%s(m)" % m.rust)
    w("    }")
    w("}")
    w("")


def gen_tests(methods, out):
    w = out.append
    w("/// proptest strategies, one per method (generated).")
    w("#[cfg(test)]")
    w("pub(crate) mod strategies {")
    w("    use super::*;")
    w("    use crate::test_support::{arb_longstr, arb_shortstr, arb_table};")
    w("    use proptest::prelude::*;")
    w("    use proptest::strategy::Union;")
    w("")
    for m in methods:
        w("    pub fn arb_%s() -> impl Strategy<Value = %s> {" % (m.snake, m.rust))
        if not m.fields:
            w("        Just(%s {})" % m.rust)
        elif len(m.fields) == 1:
            fname, ftype = m.fields[0]
            w(
                "        %s.prop_map(|%s| %s { %s })"
                % (STRATEGY[ftype], field_ident(fname), m.rust, field_ident(fname))
            )
        else:
            strats = ", ".join(STRATEGY[t] for _, t in m.fields)
            idents = ", ".join(field_ident(f) for f, _ in m.fields)
            w(
                "        (%s).prop_map(|(%s)| %s { %s })"
                % (strats, idents, m.rust, idents)
            )
        w("    }")
        w("")
    w("    /// Any method at all.")
    w("    pub fn arb_method() -> impl Strategy<Value = Method> {")
    w("        Union::new(vec![")
    for m in methods:
        w("            arb_%s().prop_map(Method::from).boxed()," % m.snake)
    w("        ])")
    w("    }")
    w("}")
    w("")
    w("#[cfg(test)]")
    w("mod tests {")
    w("    use super::strategies::*;")
    w("    use super::*;")
    w("    use crate::test_support::check_method_roundtrip;")
    w("    use proptest::prelude::*;")
    w("")
    w("    proptest! {")
    w("        #![proptest_config(ProptestConfig::with_cases(64))]")
    for m in methods:
        w("        #[test]")
        w("        fn roundtrip_%s(m in arb_%s()) {" % (m.snake, m.snake))
        w("            let method = Method::from(m);")
        w("            prop_assert_eq!(method.class_id(), %d);" % m.cls_index)
        w("            prop_assert_eq!(method.method_id(), %d);" % m.index)
        w('            prop_assert_eq!(method.name(), "%s");' % m.dotted)
        w(
            "            prop_assert_eq!(method.has_content(), %s);"
            % ("true" if m.content else "false")
        )
        w("            check_method_roundtrip(&method)?;")
        w("        }")
    w("    }")
    w("}")


def generate(xml_path):
    methods, classes = load(xml_path)
    out = []
    w = out.append
    w("//! AMQP 0-9-1 method structs and the [`Method`] enum.")
    w("//!")
    w("//! @generated by `tools/gen_methods.py` from RabbitMQ's `amqp0-9-1-rabbit.xml`")
    w("//! (plus the RabbitMQ extension methods listed in the script). DO NOT EDIT.")
    w("//! Regenerate with:")
    w("//!")
    w("//! ```text")
    w("//! python3 tools/gen_methods.py /path/to/amqp0-9-1-rabbit.xml")
    w("//! cargo fmt -p warren-amqp")
    w("//! ```")
    w("")
    w("use bytes::{BufMut, Bytes, BytesMut};")
    w("")
    w("use crate::error::DecodeError;")
    w("use crate::table::FieldTable;")
    w("use crate::wire::{self, ShortString};")
    w("")
    for idx, cname in classes:
        w("/// Class id of the `%s` class." % cname)
        w("pub const CLASS_%s: u16 = %d;" % (snake(cname).upper(), idx))
    w("")
    for m in methods:
        gen_struct(m, out)
    w("/// Any AMQP method, one variant per method struct.")
    w("#[derive(Debug, Clone, PartialEq)]")
    w("pub enum Method {")
    for m in methods:
        w("    /// `%s`" % m.dotted)
        w("    %s(%s)," % (m.rust, m.rust))
    w("}")
    w("")
    w("impl Method {")
    w("    /// Decode a method frame payload (starting with class-id and method-id). Bytes after")
    w("    /// the last argument are ignored (see [`Method::decode_strict`] for RabbitMQ's check).")
    w("    pub fn decode(payload: &[u8]) -> Result<Method, DecodeError> {")
    w("        Self::decode_with_rest(payload).map(|(m, _)| m)")
    w("    }")
    w("")
    w("    /// Like [`Method::decode`], but bytes after the last argument are an error")
    w("    /// ([`DecodeError::TrailingBytes`]): RabbitMQ 3.10 answers them with 501 FRAME_ERROR.")
    w("    pub fn decode_strict(payload: &[u8]) -> Result<Method, DecodeError> {")
    w("        match Self::decode_with_rest(payload)? {")
    w("            (m, 0) => Ok(m),")
    w("            _ => Err(DecodeError::TrailingBytes),")
    w("        }")
    w("    }")
    w("")
    w("    /// The method and how many bytes of `payload` were left after its arguments.")
    w("    fn decode_with_rest(payload: &[u8]) -> Result<(Method, usize), DecodeError> {")
    w("        let mut buf = payload;")
    w("        let class_id = wire::read_u16(&mut buf)?;")
    w("        let method_id = wire::read_u16(&mut buf)?;")
    w("        let buf = &mut buf;")
    w("        let method = match (class_id, method_id) {")
    for m in methods:
        w(
            "            (%d, %d) => Method::%s(%s::decode_args(buf)?),"
            % (m.cls_index, m.index, m.rust, m.rust)
        )
    w("            _ => return Err(DecodeError::UnknownMethod { class_id, method_id }),")
    w("        };")
    w("        Ok((method, buf.len()))")
    w("    }")
    w("")
    w("    /// Encode class-id, method-id and the arguments.")
    w("    pub fn encode(&self, out: &mut BytesMut) {")
    w("        out.put_u16(self.class_id());")
    w("        out.put_u16(self.method_id());")
    w("        match self {")
    for m in methods:
        w("            Method::%s(m) => m.encode_args(out)," % m.rust)
    w("        }")
    w("    }")
    w("")

    def accessor(fn, ret, value):
        w("    pub fn %s(&self) -> %s {" % (fn, ret))
        w("        match self {")
        for m in methods:
            w("            Method::%s(_) => %s," % (m.rust, value(m)))
        w("        }")
        w("    }")
        w("")

    w("    /// The class id.")
    accessor("class_id", "u16", lambda m: "%s::CLASS_ID" % m.rust)
    w("    /// The method id within the class.")
    accessor("method_id", "u16", lambda m: "%s::METHOD_ID" % m.rust)
    w('    /// Dotted spec name, e.g. `"basic.publish"`.')
    accessor("name", "&'static str", lambda m: "%s::NAME" % m.rust)
    w("    /// Whether the method is followed by a content header and body.")
    content = [m for m in methods if m.content]
    w("    pub fn has_content(&self) -> bool {")
    w(
        "        matches!(self, %s)"
        % " | ".join("Method::%s(_)" % m.rust for m in content)
    )
    w("    }")
    w("}")
    w("")
    gen_tests(methods, out)
    return "\n".join(out) + "\n"


def main():
    if len(sys.argv) not in (2, 3):
        sys.stderr.write(__doc__)
        sys.exit(2)
    if len(sys.argv) == 3:
        dest = sys.argv[2]
    else:
        here = os.path.dirname(os.path.abspath(__file__))
        dest = os.path.join(here, "..", "crates", "warren-amqp", "src", "methods.rs")
    code = generate(sys.argv[1])
    with open(dest, "w") as f:
        f.write(code)
    print("wrote", os.path.normpath(dest))


if __name__ == "__main__":
    main()
