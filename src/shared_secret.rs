//! `FLOOM_SECRET`: the shared secret as configured (plain or an argon2 hash) and how a
//! presented value is checked against it. Below both `config` (which parses it) and
//! `auth` (which checks callers with it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::phc::PasswordHash;
use argon2::{Argon2, PasswordVerifier};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// `FLOOM_SECRET`, as given: the secret itself, or an argon2 hash of it.
#[derive(Clone)]
pub enum SharedSecret {
    Plain(Vec<u8>),
    /// The PHC string, and the verdicts on values already presented, keyed by their
    /// SHA-256, so argon2 runs once per distinct value rather than once per request.
    Argon2 {
        phc: String,
        verdicts: Arc<Mutex<HashMap<[u8; 32], bool>>>,
    },
}

/// Bound on remembered verdicts, so that a flood of wrong guesses cannot grow memory.
const MAX_VERDICTS: usize = 1024;

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SharedSecret::Plain(_) => "SharedSecret::Plain(<redacted>)",
            SharedSecret::Argon2 { .. } => "SharedSecret::Argon2(<hash>)",
        })
    }
}

impl SharedSecret {
    pub fn parse(value: &str) -> anyhow::Result<Self> {
        if value.starts_with("$argon2") {
            PasswordHash::new(value).map_err(|e| {
                anyhow::anyhow!("looks like an argon2 hash but does not parse: {e}")
            })?;
            return Ok(SharedSecret::Argon2 {
                phc: value.to_string(),
                verdicts: Default::default(),
            });
        }
        Ok(SharedSecret::Plain(value.as_bytes().to_vec()))
    }

    /// The key upstream signs approval review links with: `FLOOM_SECRET` as configured.
    pub fn signing_key(&self) -> &[u8] {
        match self {
            SharedSecret::Plain(v) => v,
            SharedSecret::Argon2 { phc, .. } => phc.as_bytes(),
        }
    }

    /// Constant-time for the plain form; argon2's own verification for the hashed form.
    pub fn verify(&self, presented: &[u8]) -> bool {
        match self {
            SharedSecret::Plain(expected) => expected.as_slice().ct_eq(presented).into(),
            SharedSecret::Argon2 { phc, verdicts } => {
                let key: [u8; 32] = Sha256::digest(presented).into();
                if let Some(&ok) = verdicts.lock().expect("verdict cache").get(&key) {
                    return ok;
                }
                let ok = PasswordHash::new(phc)
                    .map(|hash| Argon2::default().verify_password(presented, &hash).is_ok())
                    .unwrap_or(false);
                let mut cache = verdicts.lock().expect("verdict cache");
                if cache.len() >= MAX_VERDICTS {
                    cache.clear();
                }
                cache.insert(key, ok);
                ok
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_secret_compares_bytes() {
        let s = SharedSecret::parse("s3cret").unwrap();
        assert!(s.verify(b"s3cret"));
        assert!(!s.verify(b"s3cre"));
        assert!(!s.verify(b""));
    }

    #[test]
    fn argon2_secret_verifies_and_remembers() {
        use argon2::PasswordHasher;
        let phc = Argon2::default()
            .hash_password(b"hunter2")
            .unwrap()
            .to_string();
        let s = SharedSecret::parse(&phc).unwrap();
        assert!(s.verify(b"hunter2"));
        assert!(s.verify(b"hunter2"));
        assert!(!s.verify(b"hunter3"));
        let SharedSecret::Argon2 { verdicts, .. } = &s else {
            unreachable!()
        };
        assert_eq!(verdicts.lock().unwrap().len(), 2);
    }

    #[test]
    fn broken_hash_is_refused() {
        assert!(SharedSecret::parse("$argon2id$nonsense").is_err());
    }
}
