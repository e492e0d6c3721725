//! Requests this server makes (fetching a share from another server; a model): one way
//! to build the HTTP client, with rustls on the ring provider (no C toolchain needed).

use std::sync::Once;
use std::time::Duration;

static TLS: Once = Once::new();

/// Install the TLS provider for the process (once; a no-op after).
pub fn ensure_tls() {
    TLS.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// An HTTP client with a total timeout that follows at most 5 redirects.
pub fn client(timeout: Duration) -> reqwest::Client {
    ensure_tls();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(reqwest::redirect::Policy::limited(5))
        .build()
        .expect("an HTTP client with default settings")
}
