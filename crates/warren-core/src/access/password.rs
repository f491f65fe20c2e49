//! Password hashes in RabbitMQ's formats, so users move between the two brokers with their
//! hashes: `base64(salt ++ H(salt ++ utf8 password))` with a 4-byte random salt, H being
//! SHA-256 (RabbitMQ's default, `rabbit_password_hashing_sha256`), SHA-512 or MD5 (accepted
//! when imported). Verification compares in constant time.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::scram::ScramKeys;

const SALT_LEN: usize = 4;

/// Which hash function a stored password uses, by RabbitMQ's `hashing_algorithm` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    Sha256,
    Sha512,
    Md5,
}

impl HashAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            HashAlgorithm::Sha256 => "rabbit_password_hashing_sha256",
            HashAlgorithm::Sha512 => "rabbit_password_hashing_sha512",
            HashAlgorithm::Md5 => "rabbit_password_hashing_md5",
        }
    }

    pub fn from_name(name: &str) -> Option<HashAlgorithm> {
        [
            HashAlgorithm::Sha256,
            HashAlgorithm::Sha512,
            HashAlgorithm::Md5,
        ]
        .into_iter()
        .find(|a| a.name() == name)
    }

    fn digest(self, salt: &[u8], password: &[u8]) -> Vec<u8> {
        match self {
            HashAlgorithm::Sha256 => Sha256::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            HashAlgorithm::Sha512 => Sha512::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
            HashAlgorithm::Md5 => md5::Md5::new()
                .chain_update(salt)
                .chain_update(password)
                .finalize()
                .to_vec(),
        }
    }

    fn digest_len(self) -> usize {
        match self {
            HashAlgorithm::Sha256 => 32,
            HashAlgorithm::Sha512 => 64,
            HashAlgorithm::Md5 => 16,
        }
    }
}

/// A salted password hash: salt followed by the digest, as RabbitMQ stores it; and, for a
/// password set here (not imported as a hash), its SCRAM-SHA-256 keys.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash {
    pub algorithm: HashAlgorithm,
    salted: Vec<u8>,
    scram: Option<ScramKeys>,
}

impl std::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the hash itself (it can be attacked offline).
        write!(f, "PasswordHash({})", self.algorithm.name())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("unknown hashing algorithm '{0}'")]
    UnknownAlgorithm(String),
    #[error("password hash is not valid base64")]
    NotBase64,
    #[error("password hash has {got} bytes; {algorithm} needs {want}")]
    WrongLength {
        algorithm: &'static str,
        got: usize,
        want: usize,
    },
}

impl PasswordHash {
    /// A new SHA-256 hash of `password` with a fresh random salt, and its SCRAM keys.
    pub fn new(password: &str) -> PasswordHash {
        let salt: [u8; SALT_LEN] = rand::random();
        Self::with_salt(HashAlgorithm::Sha256, salt, password)
            .with_scram(ScramKeys::derive(password))
    }

    pub fn with_salt(algorithm: HashAlgorithm, salt: [u8; SALT_LEN], password: &str) -> Self {
        let mut salted = salt.to_vec();
        salted.extend(algorithm.digest(&salt, password.as_bytes()));
        PasswordHash {
            algorithm,
            salted,
            scram: None,
        }
    }

    pub fn with_scram(mut self, keys: ScramKeys) -> Self {
        self.scram = Some(keys);
        self
    }

    /// The SCRAM-SHA-256 keys, for a password set here (an imported hash has none).
    pub fn scram(&self) -> Option<&ScramKeys> {
        self.scram.as_ref()
    }

    /// A hash as RabbitMQ's definitions carry it: `password_hash` (base64) and
    /// `hashing_algorithm`.
    pub fn from_base64(algorithm: &str, encoded: &str) -> Result<PasswordHash, HashError> {
        let algorithm = HashAlgorithm::from_name(algorithm)
            .ok_or_else(|| HashError::UnknownAlgorithm(algorithm.to_string()))?;
        let salted = STANDARD
            .decode(encoded.trim())
            .map_err(|_| HashError::NotBase64)?;
        let want = SALT_LEN + algorithm.digest_len();
        if salted.len() != want {
            return Err(HashError::WrongLength {
                algorithm: algorithm.name(),
                got: salted.len(),
                want,
            });
        }
        Ok(PasswordHash {
            algorithm,
            salted,
            scram: None,
        })
    }

    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.salted)
    }

    /// Whether `password` is the one hashed, compared in constant time.
    pub fn verify(&self, password: &str) -> bool {
        let (salt, digest) = self.salted.split_at(SALT_LEN);
        let candidate = self.algorithm.digest(salt, password.as_bytes());
        candidate.ct_eq(digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RabbitMQ's passwords guide works this example: salt 0x908DC60A, password "test12".
    #[test]
    fn sha256_matches_rabbitmqs_documented_example() {
        let hash =
            PasswordHash::with_salt(HashAlgorithm::Sha256, [0x90, 0x8D, 0xC6, 0x0A], "test12");
        assert_eq!(
            hash.to_base64(),
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        );
        let imported = PasswordHash::from_base64(
            "rabbit_password_hashing_sha256",
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
        )
        .unwrap();
        assert!(imported.verify("test12"));
        assert!(!imported.verify("test13"));
    }

    #[test]
    fn new_hashes_are_salted_and_verify() {
        let a = PasswordHash::new("secret");
        let b = PasswordHash::new("secret");
        assert!(a.verify("secret") && b.verify("secret"));
        assert!(!a.verify("Secret"));
        assert_eq!(a.algorithm, HashAlgorithm::Sha256);
        // Salts differ (a 1 in 2^32 chance of a false failure).
        assert_ne!(a.to_base64(), b.to_base64());
    }

    #[test]
    fn sha512_and_md5_imports_verify() {
        for algorithm in [HashAlgorithm::Sha512, HashAlgorithm::Md5] {
            let made = PasswordHash::with_salt(algorithm, [1, 2, 3, 4], "pw");
            let imported = PasswordHash::from_base64(algorithm.name(), &made.to_base64()).unwrap();
            assert!(imported.verify("pw"));
            assert!(!imported.verify("px"));
        }
    }

    #[test]
    fn bad_imports_are_refused() {
        assert_eq!(
            PasswordHash::from_base64("rabbit_password_hashing_sha1", "AAAA"),
            Err(HashError::UnknownAlgorithm(
                "rabbit_password_hashing_sha1".into()
            ))
        );
        assert_eq!(
            PasswordHash::from_base64("rabbit_password_hashing_sha256", "!!"),
            Err(HashError::NotBase64)
        );
        assert!(matches!(
            PasswordHash::from_base64("rabbit_password_hashing_sha256", "AAAA"),
            Err(HashError::WrongLength {
                got: 3,
                want: 36,
                ..
            })
        ));
    }
}
