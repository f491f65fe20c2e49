//! Who a verified client certificate names, for SASL EXTERNAL: its subject as RabbitMQ
//! 3.10 prints it (`CN=carl,OU=qa,O=Warren Test,C=DE`: RFC 4514 order, the most specific
//! part first) or just its common name, as RabbitMQ's `ssl_cert_login_from` chooses.

use x509_parser::prelude::*;

/// Which part of the certificate is the user name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LoginFrom {
    /// The whole subject (RabbitMQ's default, `distinguished_name`).
    #[default]
    DistinguishedName,
    /// The subject's CN (`common_name`).
    CommonName,
}

impl LoginFrom {
    pub fn parse(s: &str) -> Option<LoginFrom> {
        match s {
            "distinguished_name" => Some(LoginFrom::DistinguishedName),
            "common_name" => Some(LoginFrom::CommonName),
            _ => None,
        }
    }
}

fn short_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    let known = [
        (&x509_parser::oid_registry::OID_X509_COMMON_NAME, "CN"),
        (
            &x509_parser::oid_registry::OID_X509_ORGANIZATIONAL_UNIT,
            "OU",
        ),
        (&x509_parser::oid_registry::OID_X509_ORGANIZATION_NAME, "O"),
        (&x509_parser::oid_registry::OID_X509_COUNTRY_NAME, "C"),
        (&x509_parser::oid_registry::OID_X509_LOCALITY_NAME, "L"),
        (
            &x509_parser::oid_registry::OID_X509_STATE_OR_PROVINCE_NAME,
            "ST",
        ),
        (&x509_parser::oid_registry::OID_DOMAIN_COMPONENT, "DC"),
    ];
    known
        .iter()
        .find(|(o, _)| *o == oid)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| oid.to_id_string())
}

/// RFC 4514 escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '));
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The user name in a DER certificate, or why there is none.
pub fn user_name(der: &[u8], from: LoginFrom) -> Result<String, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    let subject = cert.subject();
    match from {
        LoginFrom::CommonName => subject
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok().map(str::to_string))
            .ok_or_else(|| "the certificate has no common name".to_string()),
        LoginFrom::DistinguishedName => {
            let mut parts = Vec::new();
            for rdn in subject.iter().collect::<Vec<_>>().into_iter().rev() {
                let attrs: Vec<String> = rdn
                    .iter()
                    .map(|a| {
                        let value = a.as_str().map(str::to_string).unwrap_or_default();
                        format!("{}={}", short_name(a.attr_type()), escape(&value))
                    })
                    .collect();
                parts.push(attrs.join("+"));
            }
            Ok(parts.join(","))
        }
    }
}
