//! `amqp://user:pass@host:port/vhost` and `amqps://...?cacertfile=FILE` parsing
//! (percent-decoded, RabbitMQ's URI scheme; `cacertfile` is the one query parameter read).

use crate::error::PerfError;

/// Where and as whom to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpUri {
    /// Host name or address.
    pub host: String,
    /// TCP port (5672 by default).
    pub port: u16,
    /// User name for PLAIN.
    pub user: String,
    /// Password for PLAIN.
    pub password: String,
    /// Virtual host (`/` when the path is empty).
    pub vhost: String,
    /// `amqps://`: TLS, with the server certificate checked against `cacertfile`.
    pub tls: bool,
    /// CA bundle (PEM) for `amqps://` (RabbitMQ's `cacertfile` URI parameter).
    pub cacertfile: Option<String>,
}

impl AmqpUri {
    /// `host:port` for `TcpStream::connect`.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The URI with the password masked, for reports.
    pub fn redacted(&self) -> String {
        format!(
            "{}://{}@{}/{}",
            if self.tls { "amqps" } else { "amqp" },
            self.user,
            self.addr(),
            self.vhost.replace('/', "%2f")
        )
    }
}

fn percent_decode(s: &str) -> Result<String, PerfError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| PerfError::Uri(format!("bad percent escape in {s:?}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PerfError::Uri(format!("{s:?} is not UTF-8")))
}

/// Parse an `amqp://` URI. Missing parts default to guest/guest, port 5672
/// and vhost `/`.
pub fn parse(uri: &str) -> Result<AmqpUri, PerfError> {
    let (rest, tls) = if let Some(r) = uri.strip_prefix("amqp://") {
        (r, false)
    } else if let Some(r) = uri.strip_prefix("amqps://") {
        (r, true)
    } else {
        return Err(PerfError::Uri(format!(
            "{uri:?} does not start with amqp:// or amqps://"
        )));
    };
    let query = rest
        .split('#')
        .next()
        .unwrap_or("")
        .split_once('?')
        .map(|(_, q)| q);
    let mut cacertfile = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        // Other parameters (heartbeat, ...) are ignored, as they always were here: the
        // load generator negotiates its own.
        if let Some(("cacertfile", v)) = pair.split_once('=') {
            cacertfile = Some(percent_decode(v)?);
        }
    }
    let rest = rest.split(['?', '#']).next().unwrap_or("");
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(ui) => match ui.find(':') {
            Some(i) => (percent_decode(&ui[..i])?, percent_decode(&ui[i + 1..])?),
            None => (percent_decode(ui)?, String::new()),
        },
        None => ("guest".to_string(), "guest".to_string()),
    };
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let end = h
            .find(']')
            .ok_or_else(|| PerfError::Uri("unterminated [ in host".into()))?;
        let host = &h[..end];
        let after = &h[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(PerfError::Uri(format!("junk after host: {after:?}"))),
        };
        (host.to_string(), port)
    } else {
        match hostport.rfind(':') {
            Some(i) => (hostport[..i].to_string(), Some(&hostport[i + 1..])),
            None => (hostport.to_string(), None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() => p
            .parse::<u16>()
            .map_err(|_| PerfError::Uri(format!("bad port {p:?}")))?,
        _ if tls => 5671,
        _ => 5672,
    };
    let host = if host.is_empty() {
        "127.0.0.1".to_string()
    } else {
        host
    };
    let vhost = if path.is_empty() {
        "/".to_string()
    } else {
        percent_decode(path)?
    };
    Ok(AmqpUri {
        host,
        port,
        user,
        password,
        vhost,
        tls,
        cacertfile,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_uri() {
        let u = parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(u.host, "127.0.0.1");
        assert_eq!(u.port, 5672);
        assert_eq!(u.user, "guest");
        assert_eq!(u.password, "guest");
        assert_eq!(u.vhost, "/");
        assert_eq!(u.addr(), "127.0.0.1:5672");
    }

    #[test]
    fn defaults_and_escapes() {
        let u = parse("amqp://localhost").unwrap();
        assert_eq!(
            (u.port, u.vhost.as_str(), u.user.as_str()),
            (5672, "/", "guest")
        );
        let u = parse("amqp://a%40b:p%3Aw@[::1]:5673/my%2fvh").unwrap();
        assert_eq!(u.user, "a@b");
        assert_eq!(u.password, "p:w");
        assert_eq!(u.addr(), "[::1]:5673");
        assert_eq!(u.vhost, "my/vh");
        assert!(parse("http://x").is_err());
        let tls = parse("amqps://h?cacertfile=%2Ftmp%2Fca.pem").unwrap();
        assert!(tls.tls);
        assert_eq!(tls.port, 5671);
        assert_eq!(tls.cacertfile.as_deref(), Some("/tmp/ca.pem"));
        assert!(!parse("amqp://h?heartbeat=5").unwrap().tls);
        assert!(parse("amqp://x:99999/").is_err());
        assert!(parse("amqp://x/%zz").is_err());
    }
}
