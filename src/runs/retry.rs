//! Which failures a worker's `retry` policy covers.

use crate::workspace::manifest::model::Retry;

/// Failures another attempt cannot mend: the worker does not load or is disabled, its
/// setup is missing (a secret, a connection, an input), or floom itself failed. `all`
/// leaves them out, as upstream's retries never reach them (they fail before the
/// worker runs); a policy that names one of them retries it all the same.
const SETUP_FAILURES: &[&str] = &[
    "invalid_worker",
    "worker_disabled",
    "missing_secret",
    "missing_connection",
    "missing_required_input",
    "internal_error",
];

/// Whether `policy` retries a run that failed with `code`: it names the code, or says
/// `all` and the code is not a setup failure.
pub fn covers(policy: &Retry, code: &str) -> bool {
    policy.on.iter().any(|o| o == code)
        || (policy.on.iter().any(|o| o == "all") && !SETUP_FAILURES.contains(&code))
}

/// Seconds before the retry of a run that failed with `code` on attempt `attempt` (0 for
/// the first run): the policy's delay; for a timeout, doubled at each attempt up to an
/// hour, as upstream backs off from failures its runner calls retryable.
pub fn delay(policy: &Retry, code: &str, attempt: i64) -> i64 {
    let base = i64::from(policy.delay_seconds);
    if code == "timeout" {
        base.saturating_mul(1 << attempt.clamp(0, 12)).min(3600)
    } else {
        base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(codes: &[&str]) -> Retry {
        Retry {
            on: codes.iter().map(|c| c.to_string()).collect(),
            ..Retry::default()
        }
    }

    #[test]
    fn all_covers_what_the_worker_did_and_naming_covers_anything() {
        assert!(covers(&on(&["all"]), "execution_error"));
        assert!(covers(&on(&["all"]), "timeout"));
        assert!(covers(&on(&["all"]), "worker_reported_error"));
        assert!(!covers(&on(&["all"]), "missing_secret"));
        assert!(covers(&on(&["missing_secret"]), "missing_secret"));
        assert!(covers(&on(&["timeout", "rate_limited"]), "rate_limited"));
        assert!(!covers(&on(&["timeout"]), "execution_error"));
    }

    #[test]
    fn timeouts_back_off() {
        let p = Retry {
            delay_seconds: 60,
            ..Retry::default()
        };
        assert_eq!(delay(&p, "execution_error", 2), 60);
        assert_eq!(
            [0, 1, 2, 6, 9].map(|a| delay(&p, "timeout", a)),
            [60, 120, 240, 3600, 3600]
        );
    }
}
