//! The wall clock, behind a seam so that tests can move time for token and session expiry.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, as JWT `exp`/`iat`/`nbf` count them.
pub type UnixTime = u64;

/// The wall clock: the system's, shifted by an offset that only tests change.
#[derive(Clone, Default, Debug)]
pub struct Clock {
    offset: Arc<AtomicI64>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock::default()
    }

    /// Now, in seconds since the epoch.
    pub fn now(&self) -> UnixTime {
        let real = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        real.saturating_add_signed(self.offset.load(Ordering::Relaxed))
    }

    /// Moves this clock (and every clone of it) forward; for tests of expiry.
    pub fn advance(&self, seconds: i64) {
        self.offset.fetch_add(seconds, Ordering::Relaxed);
    }
}
