//! Connections: the file-descriptor budget, the connection cap derived from it, and keep-alive only while there is
//! room for new clients.
//!
//! Every connection is a file descriptor. Past the process's limit, `accept` fails and nobody new is served, not even
//! `/healthz`; and the daemon's own files (the journal) could no longer be opened. So at start the soft limit is
//! raised to the hard one, the connection cap stays `RESERVED_FDS` below it, and the top quarter of the cap is
//! headroom for new requests: once more than three quarters of it are open, every answer closes its connection
//! instead of keeping it alive, so idle keep-alive sockets cannot fill the cap. Nor can a slow body that nobody reads
//! (`BodyHold`).

use std::cell::RefCell;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::web::Bytes;
use actix_web::HttpMessage as _;
use futures_util::{Stream, StreamExt};

/// File descriptors kept out of the connection cap for the daemon itself: the journal (two SQLite connections with
/// their `-wal` and `-shm` files), TLS certificate files read at start, the listener, the event loop and wake-up
/// descriptors of each worker and arbiter thread, stdio, and room for outbound exchange connections.
pub const RESERVED_FDS: u64 = 256;

/// The default cap when the descriptor limit is no constraint (actix's own default is 25,000 per worker): a signal
/// daemon has a handful of senders, and each open connection holds buffers.
pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;

/// The fewest connections a cap allows, however low the descriptor limit: below this the daemon would not be
/// usable at all.
const MIN_CONNECTIONS: usize = 16;

/// The descriptor limit before and after the start-up raise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    pub before: u64,
    pub now: u64,
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. The default soft limit (1024 on most Linux systems) is a
/// relic of `select`; the hard limit is what the administrator actually allows.
#[cfg(unix)]
pub fn raise_fd_limit() -> std::io::Result<FdLimit> {
    let (before, hard) = rlimit::Resource::NOFILE.get()?;
    // An unlimited hard limit cannot be the soft one on Linux (it is capped by `fs.nr_open`, 1,048,576 by default).
    let target = if hard == rlimit::INFINITY {
        1 << 20
    } else {
        hard
    };
    let now = rlimit::increase_nofile_limit(target)?;
    Ok(FdLimit { before, now, hard })
}

#[cfg(not(unix))]
pub fn raise_fd_limit() -> std::io::Result<FdLimit> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "no RLIMIT_NOFILE on this platform",
    ))
}

/// The connection cap: `configured`, or the default, and in any case `RESERVED_FDS` below the descriptor limit.
/// `Err` carries the cap when `configured` had to be lowered to fit, for a warning.
pub fn connection_cap(configured: Option<usize>, fd_limit: u64) -> Result<usize, usize> {
    let fits = (fd_limit.saturating_sub(RESERVED_FDS) as usize).max(MIN_CONNECTIONS);
    match configured {
        Some(wanted) if wanted > fits => Err(fits),
        Some(wanted) => Ok(wanted),
        None => Ok(fits.min(DEFAULT_MAX_CONNECTIONS)),
    }
}

/// Open connections, counted as they open and close, against the cap.
pub struct ConnectionGauge {
    open: Arc<AtomicUsize>,
    /// Above this many open connections, answers close their connection.
    keep_alive_below: usize,
}

/// Held in a connection's data for as long as the connection is open.
pub struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnectionGauge {
    pub fn new(cap: usize) -> Self {
        Self {
            open: Arc::new(AtomicUsize::new(0)),
            keep_alive_below: cap - cap / 4,
        }
    }

    /// Counts a new connection until the returned guard is dropped.
    pub fn opened(&self) -> OpenConnection {
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.open.clone())
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Whether a connection may stay open after its answer: not once the headroom is in use.
    pub fn may_keep_alive(&self) -> bool {
        self.open() <= self.keep_alive_below
    }
}

/// A request's body, shared between its handler and the answer. actix drains a chunked body that a handler dropped
/// unread (any `GET`, or a webhook already answered 413 or 408) for as long as the client keeps sending it, with no
/// timeout at all; a body still held while the answer is sent makes it close the connection after the answer
/// instead. A body read to the end is no longer actix's concern, so keep-alive is unaffected.
pub struct BodyHold(Option<Rc<RefCell<Payload>>>);

/// What the handler reads in place of the body.
struct SharedBody(Rc<RefCell<Payload>>);

impl Stream for SharedBody {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.borrow_mut().poll_next_unpin(cx)
    }
}

impl BodyHold {
    /// Takes `req`'s body, leaving a stream of it for the handler.
    pub fn take(req: &mut ServiceRequest) -> BodyHold {
        let payload = req.take_payload();
        if matches!(payload, Payload::None) {
            return BodyHold(None);
        }
        let shared = Rc::new(RefCell::new(payload));
        req.set_payload(Payload::Stream {
            payload: Box::pin(SharedBody(shared.clone())),
        });
        BodyHold(Some(shared))
    }

    /// Keeps the request's body until the last byte of `response` is sent: actix decides then whether the
    /// connection is closed for an unread body.
    pub fn until_sent<B: MessageBody + 'static>(
        self,
        response: ServiceResponse<B>,
    ) -> ServiceResponse<HoldingBody> {
        response
            .map_into_boxed_body()
            .map_body(|_, body| HoldingBody {
                body,
                _request_body: self.0,
            })
    }
}

/// An answer's body that holds its request's body until it is dropped.
pub struct HoldingBody {
    body: BoxBody,
    _request_body: Option<Rc<RefCell<Payload>>>,
}

impl MessageBody for HoldingBody {
    type Error = <BoxBody as MessageBody>::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_below_the_descriptor_limit() {
        assert_eq!(connection_cap(None, 1024), Ok(768));
        assert_eq!(connection_cap(None, 1 << 20), Ok(DEFAULT_MAX_CONNECTIONS));
        assert_eq!(connection_cap(Some(64), 1024), Ok(64));
        assert_eq!(connection_cap(Some(5000), 1024), Err(768), "lowered to fit");
        assert_eq!(connection_cap(None, 100), Ok(MIN_CONNECTIONS));
    }

    #[test]
    fn keep_alive_stops_in_the_top_quarter() {
        let gauge = ConnectionGauge::new(64);
        let open: Vec<_> = (0..48).map(|_| gauge.opened()).collect();
        assert!(gauge.may_keep_alive());
        let one_more = gauge.opened();
        assert!(!gauge.may_keep_alive());
        drop(one_more);
        assert!(gauge.may_keep_alive());
        drop(open);
        assert_eq!(gauge.open(), 0);
    }

    #[cfg(unix)]
    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let limit = raise_fd_limit().unwrap();
        assert!(limit.now >= limit.before);
        assert!(limit.now <= limit.hard);
        assert_eq!(rlimit::Resource::NOFILE.get_soft().unwrap(), limit.now);
    }
}
