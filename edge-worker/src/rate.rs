//! A token bucket per workspace, counting events. The clock is an argument.

use time::OffsetDateTime;

use braid_core::collect::RateLimit;

#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    tokens: f64,
    updated: Option<OffsetDateTime>,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> TokenBucket {
        TokenBucket {
            limit,
            tokens: f64::from(limit.burst),
            updated: None,
        }
    }

    /// Takes `events` tokens, or says after how many whole seconds enough will be back.
    pub(crate) fn take(&mut self, events: usize, now: OffsetDateTime) -> Result<(), u64> {
        let rate = f64::from(self.limit.events_per_second.max(1));
        let burst = f64::from(self.limit.burst.max(1));
        if let Some(updated) = self.updated {
            let elapsed = (now - updated).as_seconds_f64().max(0.0);
            self.tokens = (self.tokens + elapsed * rate).min(burst);
        }
        self.updated = Some(now);
        #[expect(clippy::cast_precision_loss, reason = "batch sizes are far below 2^52")]
        let wanted = events as f64;
        // A batch larger than the burst goes through on a full bucket, leaving a debt.
        if wanted <= self.tokens || (wanted > burst && self.tokens >= burst) {
            self.tokens -= wanted;
            return Ok(());
        }
        let missing = wanted.min(burst) - self.tokens.min(burst);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a small positive number of seconds"
        )]
        let wait = (missing / rate).ceil().max(1.0) as u64;
        Err(wait)
    }
}
