//! Panics where untrusted input or a background task can cause one (a parser meeting a
//! file it was not built for, a run task): caught at the edge and turned into errors, so
//! that one bad file or run never takes the server, or its other work, down with it.

use std::any::Any;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// What a panic said, as far as it can be told.
pub fn message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Run `f`; a panic in it becomes `Err` with its message. Whatever `f` touched is
/// dropped with it, so nothing half-changed is seen afterwards.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|p| message(&*p))
}

/// Run a parser over untrusted input (a user's file, an upload): its error as text,
/// and a panic in it as one more way the input is malformed.
pub fn parse_untrusted<T, E: std::fmt::Display>(
    parse: impl FnOnce() -> Result<T, E>,
) -> Result<T, String> {
    match catch(parse) {
        Ok(parsed) => parsed.map_err(|e| e.to_string()),
        Err(panic) => Err(format!("the reader failed on it: {panic}")),
    }
}

/// Run `work` as a task of its own; a panic in it becomes `Err` with its message.
pub async fn in_task<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    tokio::spawn(work)
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(p) => message(&*p),
            Err(e) => e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_its_message() {
        assert_eq!(catch(|| 7), Ok(7));
        assert_eq!(catch(|| -> u8 { panic!("boom") }), Err("boom".to_string()));
        let n = 3;
        assert_eq!(
            catch(|| -> u8 { panic!("boom {n}") }),
            Err("boom 3".to_string())
        );
    }

    #[test]
    fn a_parser_that_panics_reports_malformed_input() {
        let r: Result<(), String> = parse_untrusted(|| -> Result<(), std::fmt::Error> {
            let bytes: &[u8] = b"";
            let _ = bytes[1];
            Ok(())
        });
        let e = r.unwrap_err();
        assert!(
            e.starts_with("the reader failed on it: index out of bounds"),
            "{e}"
        );
        let r: Result<(), String> = parse_untrusted(|| Err(std::fmt::Error));
        assert_eq!(
            r.unwrap_err(),
            "an error occurred when formatting an argument"
        );
    }

    #[tokio::test]
    async fn a_panicking_task_is_an_error() {
        assert_eq!(in_task(async { 7 }).await, Ok(7));
        let r = in_task(async {
            let v: Vec<u8> = Vec::new();
            v[1]
        })
        .await;
        assert!(r.unwrap_err().contains("index out of bounds"));
    }
}
