//! The secret vault: upstream's `.secrets.enc` at the workspace root, a 12-byte nonce
//! followed by AES-256-GCM of a JSON object `{"NAME": "value", …}` (no associated
//! data). The file is git-ignored and never committed.
//!
//! The key comes from `FLOOM_SECRETS_KEY` (base64 of 32 bytes) or a key file outside
//! the workspace holding the 32 raw bytes (upstream's `~/.config/workeros/secrets.key`),
//! created with mode 600 when the first secret is saved. Values live in memory once
//! decrypted; nothing here formats a value into a message or a log line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use anyhow::{Context, bail};
use base64::Engine;
use tokio::sync::RwLock;

pub const VAULT_FILE: &str = ".secrets.enc";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where the key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// `FLOOM_SECRETS_KEY`: base64 of the 32 bytes.
    Env(String),
    /// A file of 32 raw bytes, created on first use.
    File(PathBuf),
}

pub struct Vault {
    path: PathBuf,
    key_source: KeySource,
    state: RwLock<State>,
}

struct State {
    key: Option<[u8; 32]>,
    values: BTreeMap<String, String>,
}

impl Vault {
    /// Open the vault of the workspace at `root`. A vault that exists but cannot be
    /// read (no key, a wrong key, a damaged file) is an error here, at start-up, and
    /// the file is left as it is.
    pub fn open(root: &Path, key_source: KeySource) -> anyhow::Result<Self> {
        if let KeySource::File(file) = &key_source
            && let (Ok(root), Some(parent)) = (root.canonicalize(), file.parent())
            && parent.canonicalize().is_ok_and(|p| p.starts_with(&root))
        {
            bail!(
                "FLOOM_SECRETS_KEY_FILE ({}) must be outside the workspace: the key would sit next to the vault it opens",
                file.display()
            );
        }
        exclude_from_git(root)?;
        let path = root.join(VAULT_FILE);
        let key = load_key(&key_source)?;
        let values = match std::fs::read(&path) {
            Ok(bytes) => {
                let Some(key) = key else {
                    bail!(
                        "{} exists but no key was found ({}); set FLOOM_SECRETS_KEY or restore the key file",
                        path.display(),
                        key_source.describe()
                    );
                };
                decrypt(&key, &bytes).with_context(|| {
                    format!(
                        "cannot open the secret vault {} with the key from {}: wrong key or damaged file (left untouched)",
                        path.display(),
                        key_source.describe()
                    )
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        Ok(Vault {
            path,
            key_source,
            state: RwLock::new(State { key, values }),
        })
    }

    /// Names of the stored secrets, sorted.
    pub async fn names(&self) -> Vec<String> {
        self.state.read().await.values.keys().cloned().collect()
    }

    pub async fn contains(&self, name: &str) -> bool {
        self.state.read().await.values.contains_key(name)
    }

    /// The values of `names` that are stored (for a run's environment).
    pub async fn values(&self, names: &[String]) -> BTreeMap<String, String> {
        let state = self.state.read().await;
        names
            .iter()
            .filter_map(|n| state.values.get(n).map(|v| (n.clone(), v.clone())))
            .collect()
    }

    /// Every stored value and the key's own text forms (base64 and hex), `(NAME, value)`,
    /// for redaction: none of them may leave through a run.
    pub async fn redactable(&self) -> Vec<(String, String)> {
        use base64::Engine as _;
        let state = self.state.read().await;
        let mut out: Vec<(String, String)> = state
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if let Some(key) = &state.key {
            for form in [
                base64::engine::general_purpose::STANDARD.encode(key),
                crate::ids::hex(key),
            ] {
                out.push(("FLOOM_SECRETS_KEY".into(), form));
            }
        }
        out
    }

    /// Store a value; durable (on disk, synced) when this returns.
    pub async fn set(&self, name: &str, value: &str) -> anyhow::Result<()> {
        let mut state = self.state.write().await;
        let key = match state.key {
            Some(k) => k,
            None => {
                let k = create_key(&self.key_source)?;
                state.key = Some(k);
                k
            }
        };
        let mut next = state.values.clone();
        next.insert(name.to_string(), value.to_string());
        self.write(&key, &next)?;
        state.values = next;
        Ok(())
    }

    /// Remove a value; false when it was not stored.
    pub async fn remove(&self, name: &str) -> anyhow::Result<bool> {
        let mut state = self.state.write().await;
        if !state.values.contains_key(name) {
            return Ok(false);
        }
        let mut next = state.values.clone();
        next.remove(name);
        if next.is_empty() {
            // Upstream writes no vault when there are no secrets.
            match std::fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("removing the secret vault"),
            }
        } else {
            let key = state.key.context("a stored vault always has a key")?;
            self.write(&key, &next)?;
        }
        state.values = next;
        Ok(true)
    }

    /// Encrypt to a temporary file, sync, rename: a crash leaves the old or the new vault.
    fn write(&self, key: &[u8; 32], values: &BTreeMap<String, String>) -> anyhow::Result<()> {
        let bytes = encrypt(key, values)?;
        let tmp = self.path.with_extension("enc.tmp");
        let mut f = private_file(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path).context("replacing the secret vault")?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

impl KeySource {
    fn describe(&self) -> String {
        match self {
            KeySource::Env(_) => "FLOOM_SECRETS_KEY".into(),
            KeySource::File(p) => p.display().to_string(),
        }
    }
}

fn load_key(source: &KeySource) -> anyhow::Result<Option<[u8; 32]>> {
    match source {
        KeySource::Env(b64) => decode_key(b64.trim().as_bytes())
            .map(Some)
            .context("FLOOM_SECRETS_KEY must be the base64 of 32 bytes"),
        KeySource::File(path) => match std::fs::read(path) {
            Ok(bytes) => decode_key(&bytes).map(Some).with_context(|| {
                format!(
                    "the key file {} must hold 32 raw bytes (or their hex or base64)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading the key file {}", path.display())),
        },
    }
}

/// Upstream's key file holds the raw bytes; its docs say hex; its GitHub variable is
/// base64. Accept all three.
fn decode_key(bytes: &[u8]) -> anyhow::Result<[u8; 32]> {
    if let Ok(raw) = <[u8; 32]>::try_from(bytes) {
        return Ok(raw);
    }
    let text = std::str::from_utf8(bytes).context("not 32 bytes")?.trim();
    let decoded = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()?
    } else {
        base64::engine::general_purpose::STANDARD.decode(text)?
    };
    <[u8; 32]>::try_from(decoded.as_slice()).map_err(|_| anyhow::anyhow!("not 32 bytes"))
}

fn create_key(source: &KeySource) -> anyhow::Result<[u8; 32]> {
    let KeySource::File(path) = source else {
        bail!("FLOOM_SECRETS_KEY is set but could not be read");
    };
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode_600()
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    f.write_all(&key)?;
    f.sync_all()?;
    tracing::info!(path = %path.display(), "created the secret vault key");
    Ok(key)
}

fn private_file(path: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode_600()
        .open(path)
        .with_context(|| format!("writing {}", path.display()))
}

trait Mode600 {
    fn mode_600(&mut self) -> &mut Self;
}

impl Mode600 for std::fs::OpenOptions {
    #[cfg(unix)]
    fn mode_600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
    #[cfg(not(unix))]
    fn mode_600(&mut self) -> &mut Self {
        self
    }
}

pub fn decrypt(key: &[u8; 32], bytes: &[u8]) -> anyhow::Result<BTreeMap<String, String>> {
    if bytes.len() < NONCE_LEN + TAG_LEN {
        bail!("the file is {} bytes, too short to be a vault", bytes.len());
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_from(nonce).context("nonce")?;
    let plain = Aes256Gcm::new(key.into())
        .decrypt(&nonce, sealed)
        .map_err(|_| anyhow::anyhow!("authentication failed"))?;
    serde_json::from_slice(&plain).context("the decrypted vault is not a JSON object of strings")
}

pub fn encrypt(key: &[u8; 32], values: &BTreeMap<String, String>) -> anyhow::Result<Vec<u8>> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let sealed = Aes256Gcm::new(key.into())
        .encrypt(&Nonce::from(nonce), python_json(values).as_bytes())
        .map_err(|_| anyhow::anyhow!("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend(sealed);
    Ok(out)
}

/// The object as Python's `json.dumps` writes it (what upstream stores): `", "` and
/// `": "` separators, non-ASCII escaped as `\uXXXX`.
fn python_json(values: &BTreeMap<String, String>) -> String {
    let s = |v: &str| {
        let json = serde_json::to_string(v).expect("strings serialize");
        let mut out = String::with_capacity(json.len());
        for c in json.chars() {
            if c.is_ascii() {
                out.push(c);
            } else {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
        }
        out
    };
    let body: Vec<String> = values
        .iter()
        .map(|(k, v)| format!("{}: {}", s(k), s(v)))
        .collect();
    format!("{{{}}}", body.join(", "))
}

/// Keep the vault out of git even in a workspace whose `.gitignore` does not say so
/// (a clone of an upstream workspace): `.git/info/exclude` is local and never committed.
fn exclude_from_git(root: &Path) -> anyhow::Result<()> {
    let info = root.join(".git").join("info");
    if !root.join(".git").is_dir() {
        return Ok(());
    }
    let exclude = info.join("exclude");
    let current = std::fs::read_to_string(&exclude).unwrap_or_default();
    // With a `*`: the temporary file of an interrupted write is private too.
    let line = format!("/{VAULT_FILE}*");
    if current.lines().any(|l| l.trim() == line) {
        return Ok(());
    }
    std::fs::create_dir_all(&info)?;
    let mut text = current;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&line);
    text.push('\n');
    std::fs::write(&exclude, text).context("adding the vault to .git/info/exclude")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_matches_upstream_layout() {
        let key = [7u8; 32];
        let values = BTreeMap::from([
            ("A_KEY".to_string(), "sk-1".to_string()),
            ("B".to_string(), "naïve \"q\"".to_string()),
        ]);
        let bytes = encrypt(&key, &values).unwrap();
        assert_eq!(
            bytes.len(),
            NONCE_LEN + python_json(&values).len() + TAG_LEN
        );
        assert_eq!(
            python_json(&values),
            r#"{"A_KEY": "sk-1", "B": "na\u00efve \"q\""}"#
        );
        assert_eq!(decrypt(&key, &bytes).unwrap(), values);
        assert!(decrypt(&[8u8; 32], &bytes).is_err(), "wrong key");
        assert!(decrypt(&key, &bytes[..20]).is_err(), "truncated");
    }

    #[test]
    fn keys_in_every_documented_encoding() {
        let raw = [0xabu8; 32];
        assert_eq!(decode_key(&raw).unwrap(), raw);
        assert_eq!(decode_key("ab".repeat(32).as_bytes()).unwrap(), raw);
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        assert_eq!(decode_key(b64.as_bytes()).unwrap(), raw);
        assert!(decode_key(b"short").is_err());
    }
}
