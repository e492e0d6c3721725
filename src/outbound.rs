//! Requests this server makes (fetching a share from another server; a model; a run's
//! notification): one way to build the HTTP client, with rustls on the ring provider
//! (no C toolchain needed).

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
    build(timeout, reqwest::redirect::Policy::limited(5))
}

/// The same, following no redirect: for deliveries (a run's notification), where a
/// redirect is an answer to report, not a place to send the body again.
pub fn client_without_redirects(timeout: Duration) -> reqwest::Client {
    build(timeout, reqwest::redirect::Policy::none())
}

fn build(timeout: Duration, redirect: reqwest::redirect::Policy) -> reqwest::Client {
    ensure_tls();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .redirect(redirect)
        .build()
        .expect("an HTTP client with default settings")
}
