//! Idle timeouts on streamed bodies: a body that sends nothing for too long is cut off.
//!
//! The timer is armed only when the body has to wait for data, so a body whose frames are
//! already buffered costs no timer at all.

use std::error::Error as StdError;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error type of the bodies weir streams.
pub type BoxError = Box<dyn StdError + Send + Sync>;

/// Which peer stopped sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The client, while sending its request body.
    Client,
    /// The endpoint, while sending its response body.
    Upstream,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Client => "client",
            Side::Upstream => "upstream",
        })
    }
}

/// A body sent nothing for the whole idle timeout.
#[derive(Debug, thiserror::Error)]
#[error("the {side} sent no body data for {after:?}")]
pub struct IdleTimeout {
    /// Who went quiet.
    pub side: Side,
    /// The timeout that expired.
    pub after: Duration,
}

impl IdleTimeout {
    /// Finds an `IdleTimeout` of `side` anywhere in an error's source chain.
    pub fn in_chain(error: &(dyn StdError + 'static), side: Side) -> bool {
        super::in_chain::<IdleTimeout>(error).any(|t| t.side == side)
    }
}

/// Wraps a body so that it fails with [`IdleTimeout`] after `timeout` without a frame.
pub struct IdleBody<B> {
    inner: B,
    side: Side,
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    progressed: bool,
}

impl<B> IdleBody<B> {
    /// `inner`, cut off when `side` sends nothing for `timeout`.
    pub fn new(inner: B, side: Side, timeout: Duration) -> Self {
        IdleBody {
            inner,
            side,
            timeout,
            timer: None,
            progressed: false,
        }
    }
}

impl<B> Body for IdleBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.progressed = true;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + this.timeout;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if std::mem::take(&mut this.progressed) {
                    timer.as_mut().reset(deadline);
                }
                match timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Some(Err(IdleTimeout {
                        side: this.side,
                        after: this.timeout,
                    }
                    .into()))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    #[tokio::test(start_paused = true)]
    async fn a_quiet_body_times_out_and_a_steady_one_does_not() {
        // Three frames 40 s apart pass a 60 s idle timeout.
        let steady = futures_util::stream::unfold(0, |i| async move {
            if i == 3 {
                return None;
            }
            tokio::time::sleep(Duration::from_secs(40)).await;
            Some((
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from("x"))),
                i + 1,
            ))
        });
        let body = IdleBody::new(
            StreamBody::new(Box::pin(steady)),
            Side::Client,
            Duration::from_secs(60),
        );
        assert_eq!(body.collect().await.unwrap().to_bytes(), "xxx");

        // A body that never sends fails after the timeout with an error naming the side.
        let silent =
            futures_util::stream::pending::<Result<Frame<Bytes>, std::convert::Infallible>>();
        let mut body = IdleBody::new(
            StreamBody::new(silent),
            Side::Upstream,
            Duration::from_secs(60),
        );
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(IdleTimeout::in_chain(error.as_ref(), Side::Upstream));
        assert!(!IdleTimeout::in_chain(error.as_ref(), Side::Client));
    }
}
