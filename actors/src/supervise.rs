//! Turning a panic in an actor's logic into a restart that keeps the actor's state.
//!
//! actix's `Supervisor` restarts an actor that stops itself, keeping the same actor value, but it does not catch
//! panics: a panic would drop the actor and its mailbox. So handlers run their logic through `guard`, and on a panic
//! they call `ctx.stop()`; the supervisor then restarts the same value, whose state the logic could not have changed
//! half-way (decisions take `&self`).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Runs `logic`, turning a panic into an `Err` with the panic's message.
pub fn guard<R>(logic: impl FnOnce() -> R) -> Result<R, String> {
    catch_unwind(AssertUnwindSafe(logic)).map_err(panic_message)
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}
