//! Random identifiers (`run_` + 12 hex, UUIDs, tokens) and the HMAC every signed token
//! (magic links, review links, webhook signatures) is made with.

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the operating system's random source");
    b
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    hex(&random_bytes(n))
}

/// `n` random bytes as unpadded URL-safe base64 (Python's `token_urlsafe(n)`).
pub fn random_urlsafe(n: usize) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes(n))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|x| format!("{x:02x}")).collect()
}

/// `prefix` + 12 hex characters, upstream's id shape (`run_…`, `apr_…`, `art_…`).
pub fn prefixed(prefix: &str) -> String {
    format!("{prefix}{}", random_hex(6))
}

/// This machine's host name (what `gethostname` gives), if the kernel tells it.
pub fn host_name() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

/// A run's own credential (upstream's `wrt_` form), given to it as `WORKEROS_RUN_TOKEN`.
pub fn run_token() -> String {
    format!("wrt_{}", random_urlsafe(32))
}

/// A random UUID (version 4) in its hyphenated form.
pub fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the operating system's random source");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// HMAC-SHA256 of the concatenated `parts` under `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}
