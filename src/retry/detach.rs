//! A send that outlives its caller: polled on the caller's own task while the caller waits (no
//! task spawned per send), and handed to a task of its own only if the caller's future is
//! dropped before it ends (the caller hung up), so that a send under way is never cut off. A
//! panic in the send is the caller's `Internal` error, as a task's panic was.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::error::Error;

/// Runs `F` to its end whether or not its result is still wanted.
pub(crate) struct Detached<F: Future + Send + 'static>
where
    F::Output: Send,
{
    /// `None` once it has ended.
    inner: Option<Pin<Box<F>>>,
}

impl<F: Future + Send + 'static> Detached<F>
where
    F::Output: Send,
{
    /// Boxed once here: the send's state is a few KiB, and inline it would sit in every
    /// queued request's future.
    pub(crate) fn new(future: F) -> Detached<F> {
        Detached {
            inner: Some(Box::pin(future)),
        }
    }
}

/// What a send's output is when the send panicked: the caller's `Internal` error.
pub(crate) trait Recover {
    /// The output standing for a panic.
    fn panicked() -> Self;
}

impl<T> Recover for Result<T, Error> {
    fn panicked() -> Self {
        Err(Error::Internal("the send panicked".into()))
    }
}

impl<F: Future + Send + 'static> Future for Detached<F>
where
    F::Output: Send + Recover,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(inner) = self.inner.as_mut() else {
            return Poll::Pending;
        };
        let polled = std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx)));
        let output = match polled {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(output)) => output,
            Err(_) => Recover::panicked(),
        };
        self.inner = None;
        Poll::Ready(output)
    }
}

impl<F: Future + Send + 'static> Drop for Detached<F>
where
    F::Output: Send,
{
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        // Dropped outside a runtime only when the runtime itself is going away, and then
        // there is nothing left to finish the send on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = inner.await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_send_dropped_by_its_caller_still_runs_to_its_end() {
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let send = Detached::new(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = done_tx.send("sent");
            Ok(7)
        });
        // The caller gives up half-way.
        let gave_up = tokio::time::timeout(Duration::from_millis(500), send).await;
        assert!(gave_up.is_err());
        assert_eq!(done_rx.await, Ok("sent"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_send_awaited_gives_its_output_on_the_callers_task() {
        let send = Detached::new(async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            Ok(7)
        });
        assert_eq!(send.await.ok(), Some(7));
    }

    #[tokio::test]
    async fn a_send_that_panics_is_an_internal_error() {
        let send = Detached::new(async {
            if std::hint::black_box(true) {
                panic!("a bug in the send");
            }
            Ok(7)
        });
        assert!(matches!(send.await, Err(Error::Internal(_))));
    }
}
