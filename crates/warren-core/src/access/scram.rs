//! SCRAM-SHA-256 (RFC 5802 with RFC 7677's hash): the keys a user keeps for it, derived
//! when a password is set (the password itself is never stored, and the RabbitMQ-format
//! hash cannot yield them), and the server's side of one exchange, independent of the
//! protocol that carries the messages (MQTT 5's AUTH packets today).
//!
//! Channel binding is not offered (a client asking for it with `p=` is refused), and
//! passwords are used as their UTF-8 bytes without SASLprep (identical for ASCII).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// PBKDF2 rounds for keys derived here (RFC 7677's minimum).
pub const ITERATIONS: u32 = 4096;
const SALT_LEN: usize = 16;
/// Bounds a client's nonce and user name (an exchange happens before any login).
const MAX_MESSAGE: usize = 1024;

/// What a user keeps for SCRAM-SHA-256 logins.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramKeys {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: [u8; 32],
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys allow an offline attack on the password: never printed.
        write!(f, "ScramKeys(i={})", self.iterations)
    }
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC accepts any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

impl ScramKeys {
    /// Keys for `password` with a fresh random salt.
    pub fn derive(password: &str) -> ScramKeys {
        let salt: [u8; SALT_LEN] = rand::random();
        Self::derive_with(password, &salt, ITERATIONS)
    }

    pub fn derive_with(password: &str, salt: &[u8], iterations: u32) -> ScramKeys {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        let client_key = hmac(&salted, b"Client Key");
        ScramKeys {
            salt: salt.to_vec(),
            iterations,
            stored_key: Sha256::digest(client_key).into(),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// `iterations,salt,stored key,server key` (base64), as the user record keeps them.
    pub fn to_text(&self) -> String {
        format!(
            "{},{},{},{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }

    pub fn from_text(text: &str) -> Option<ScramKeys> {
        let mut parts = text.split(',');
        let iterations = parts.next()?.parse().ok()?;
        let salt = STANDARD.decode(parts.next()?).ok()?;
        let stored_key = STANDARD.decode(parts.next()?).ok()?.try_into().ok()?;
        let server_key = STANDARD.decode(parts.next()?).ok()?.try_into().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(ScramKeys {
            salt,
            iterations,
            stored_key,
            server_key,
        })
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM channel binding is not supported")]
    ChannelBinding,
    #[error("SCRAM proof does not match for user '{0}'")]
    BadProof(String),
}

/// The server between its first message and the client's final one.
pub struct ScramServer {
    user: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// `None` for a user without keys: the exchange runs to its end and fails there, so
    /// that a client cannot tell unknown users from wrong passwords.
    keys: Option<ScramKeys>,
}

/// A user name in SCRAM's escaping (`=2C` for `,`, `=3D` for `=`).
fn unescape_name(raw: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("bad escape in the user name")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn printable_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7E).contains(&b) && b != b',')
}

impl ScramServer {
    /// Reads the client's first message; `keys_of` looks the user's keys up. Answers the
    /// exchange and the server's first message.
    pub fn start(
        client_first: &str,
        keys_of: impl FnOnce(&str) -> Option<ScramKeys>,
    ) -> Result<(ScramServer, String), ScramError> {
        let server_nonce = STANDARD.encode(rand::random::<[u8; 18]>());
        Self::start_with_nonce(client_first, keys_of, &server_nonce)
    }

    fn start_with_nonce(
        client_first: &str,
        keys_of: impl FnOnce(&str) -> Option<ScramKeys>,
        server_nonce: &str,
    ) -> Result<(ScramServer, String), ScramError> {
        if client_first.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed("client-first-message too long"));
        }
        // gs2-header: channel-binding flag, optional authzid, then the bare message.
        let (flag, rest) = client_first
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel-binding flag")),
        }
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(ScramError::Malformed("no GS2 header"))?;
        let mut fields = bare.split(',');
        let user = match fields.next() {
            Some(n) if n.starts_with("n=") => unescape_name(&n[2..])?,
            Some(m) if m.starts_with("m=") => {
                return Err(ScramError::Malformed("mandatory extension not supported"))
            }
            _ => return Err(ScramError::Malformed("no user name")),
        };
        let client_nonce = match fields.next() {
            Some(r) if r.starts_with("r=") && printable_nonce(&r[2..]) => &r[2..],
            _ => return Err(ScramError::Malformed("no client nonce")),
        };
        if !authzid.is_empty()
            && authzid.strip_prefix("a=").map(unescape_name) != Some(Ok(user.clone()))
        {
            return Err(ScramError::Malformed(
                "an authorization identity other than the user",
            ));
        }
        let keys = keys_of(&user);
        let fake_salt: [u8; SALT_LEN] = rand::random();
        let (salt, iterations) = match &keys {
            Some(k) => (k.salt.as_slice(), k.iterations),
            None => (&fake_salt[..], ITERATIONS),
        };
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={iterations}", STANDARD.encode(salt));
        Ok((
            ScramServer {
                user,
                gs2_header: format!("{flag},{authzid},"),
                client_first_bare: bare.to_string(),
                server_first: server_first.clone(),
                nonce,
                keys,
            },
            server_first,
        ))
    }

    /// The user the client claims to be.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Checks the client's final message; answers the user and the server's final message
    /// (which proves to the client that the server knows its keys).
    pub fn finish(self, client_final: &str) -> Result<(String, String), ScramError> {
        if client_final.len() > MAX_MESSAGE {
            return Err(ScramError::Malformed("client-final-message too long"));
        }
        let (without_proof, proof) = client_final
            .rsplit_once(",p=")
            .ok_or(ScramError::Malformed("no proof"))?;
        let mut fields = without_proof.split(',');
        let binding = fields
            .next()
            .and_then(|c| c.strip_prefix("c="))
            .and_then(|c| STANDARD.decode(c).ok())
            .ok_or(ScramError::Malformed("no channel binding field"))?;
        if binding != self.gs2_header.as_bytes() {
            return Err(ScramError::Malformed(
                "channel binding differs from the GS2 header",
            ));
        }
        if fields.next().and_then(|r| r.strip_prefix("r=")) != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce differs"));
        }
        let proof: [u8; 32] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(ScramError::Malformed("proof is not 32 bytes of base64"))?;
        let auth_message = format!(
            "{},{},{without_proof}",
            self.client_first_bare, self.server_first
        );
        let Some(keys) = self.keys else {
            return Err(ScramError::BadProof(self.user));
        };
        let signature = hmac(&keys.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for (k, (p, s)) in client_key.iter_mut().zip(proof.iter().zip(signature)) {
            *k = p ^ s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !bool::from(stored.ct_eq(&keys.stored_key)) {
            return Err(ScramError::BadProof(self.user));
        }
        let server_signature = hmac(&keys.server_key, auth_message.as_bytes());
        Ok((
            self.user,
            format!("v={}", STANDARD.encode(server_signature)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677 section 3's example exchange.
    #[test]
    fn the_rfc_7677_example_verifies() {
        let salt = STANDARD.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let keys = ScramKeys::derive_with("pencil", &salt, 4096);
        let (server, first) = ScramServer::start_with_nonce(
            "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
            |u| (u == "user").then(|| keys.clone()),
            "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
        )
        .unwrap();
        assert_eq!(
            first,
            "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
        );
        let (user, last) = server
            .finish(
                "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                 p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
            )
            .unwrap();
        assert_eq!(user, "user");
        assert_eq!(last, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    #[test]
    fn wrong_proofs_unknown_users_and_bad_messages_are_refused() {
        let keys = ScramKeys::derive_with("pencil", b"salt", 16);
        let start = |first: &str| {
            ScramServer::start_with_nonce(first, |u| (u == "user").then(|| keys.clone()), "S")
        };
        let (server, _) = start("n,,n=user,r=abc").unwrap();
        let wrong = format!("c=biws,r=abcS,p={}", STANDARD.encode([0u8; 32]));
        assert_eq!(
            server.finish(&wrong),
            Err(ScramError::BadProof("user".into()))
        );
        // An unknown user gets a server-first message all the same.
        let (server, first) = start("n,,n=nobody,r=abc").unwrap();
        assert!(first.starts_with("r=abcS,s="));
        assert!(matches!(
            server.finish(&wrong),
            Err(ScramError::BadProof(_))
        ));
        assert_eq!(
            start("p=tls-unique,,n=user,r=abc").err(),
            Some(ScramError::ChannelBinding)
        );
        for bad in [
            "",
            "n,,",
            "n,,r=abc",
            "x,,n=user,r=abc",
            "n,,n=us=ZZer,r=abc",
            "n,,n=user,r=",
        ] {
            assert!(
                matches!(start(bad), Err(ScramError::Malformed(_))),
                "{bad:?}"
            );
        }
        let (server, _) = start("n,,n=a=3Db=2Cc,r=abc").unwrap();
        assert_eq!(server.user(), "a=b,c");
        // A final message for another nonce is refused.
        let (server, _) = start("n,,n=user,r=abc").unwrap();
        let other = format!("c=biws,r=abcX,p={}", STANDARD.encode([0u8; 32]));
        assert!(matches!(
            server.finish(&other),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn keys_survive_their_text_form() {
        let keys = ScramKeys::derive_with("pw", b"0123456789abcdef", 32);
        assert_eq!(ScramKeys::from_text(&keys.to_text()), Some(keys));
        assert_eq!(ScramKeys::from_text("1,2"), None);
    }
}
