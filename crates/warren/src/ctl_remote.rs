//! `warren ctl --uri http://user:password@host:port`: the management API of a remote
//! broker over HTTP/1.1 (hyper's client), with Basic authentication. HTTPS is not spoken
//! here; reach a TLS-only API through a tunnel or run ctl on the broker's machine.

use base64::Engine;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use serde_json::Value;

pub struct Remote {
    host: String,
    port: u16,
    /// `Basic ...`, when the URI has credentials.
    authorization: Option<String>,
}

impl Remote {
    pub fn parse(uri: &str) -> Result<Remote, String> {
        let rest = uri.strip_prefix("http://").ok_or_else(|| {
            format!("--uri '{uri}': expected http://user:password@host:port (HTTPS is not supported by ctl)")
        })?;
        let authority = rest.split('/').next().unwrap_or("");
        let (credentials, hostport) = match authority.rsplit_once('@') {
            Some((c, h)) => (Some(c), h),
            None => (None, authority),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse().map_err(|_| format!("--uri '{uri}': bad port"))?,
            ),
            None => (hostport, 15672),
        };
        if host.is_empty() {
            return Err(format!("--uri '{uri}': no host"));
        }
        let authorization = credentials.map(|c| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(percent_decode(c))
            )
        });
        Ok(Remote {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            authorization,
        })
    }

    /// One request; the status and the JSON body (`Null` when empty).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start a runtime: {e}"))?;
        runtime.block_on(self.send(method, path, headers, body))
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let address = format!("{}:{}", self.host, self.port);
        let stream = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(&address),
        )
        .await
        .map_err(|_| format!("cannot reach {address}: timed out"))?
        .map_err(|e| format!("cannot reach {address}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {address} failed: {e}"))?;
        tokio::spawn(connection);
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", address.as_str())
            .header("content-type", "application/json");
        if let Some(a) = &self.authorization {
            builder = builder.header("authorization", a.as_str());
        }
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = builder
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| format!("bad request: {e}"))?;
        let response = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            sender.send_request(request),
        )
        .await
        .map_err(|_| format!("{address} did not answer within 60 s"))?
        .map_err(|e| format!("request to {address} failed: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("cannot read the answer: {e}"))?
            .to_bytes();
        if status == 401 {
            return Err(format!("{address} refused the credentials (HTTP 401)"));
        }
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        Ok((status, json))
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}
