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
