//! Daily caps (push to all users or by tag: 10 or 100 a day): one of the day's calls is taken
//! before a request is placed, so a caller past the cap is answered 429 at once, never queued.
//! The day is counted over a sliding window of 24 hours plus the longest a call taken now may
//! take to reach Tencent, which holds every calendar day and every 24 hours of arrivals to the
//! cap whichever way Tencent counts. A call taken is not given back (a request dropped after it
//! spends one): the count may only err low.
//!
//! Locally the replica counts alone; with Redis, every replica's calls are counted in one sorted
//! set. While Redis is away the cap is not shared out: what the other replicas took cannot be
//! known, so daily-capped calls are refused until it is back.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Pacer;
use super::lanes::Lanes;
use super::shared::Daily;
use crate::error::Error;

/// The day a daily cap counts over.
const DAY: Duration = Duration::from_secs(24 * 60 * 60);
/// What a caller refused because Redis cannot count is told to wait.
const UNKNOWN_RETRY: Duration = Duration::from_secs(1);

impl Pacer {
    /// Takes one of `api`'s calls of the day (at most `cap`), where `margin` is the longest a
    /// call taken now may take to reach Tencent (its wait and its attempts); or refuses it.
    pub async fn take_daily(
        &self,
        api: &Arc<str>,
        cap: u32,
        margin: Duration,
    ) -> Result<(), Error> {
        let window = DAY + margin;
        let Some(shared) = self.inner.budget.shared() else {
            return self.lanes().take_daily(api, cap, window, Instant::now());
        };
        match shared.take_daily(api, cap, window).await {
            Some(Daily::Taken) => Ok(()),
            Some(Daily::Spent(later)) => Err(Error::DailyCap {
                retry_after: later.max(Duration::from_secs(1)),
                known: true,
            }),
            None => Err(Error::DailyCap {
                retry_after: UNKNOWN_RETRY,
                known: false,
            }),
        }
    }
}

impl Lanes {
    /// [`Pacer::take_daily`] on this replica's own count.
    fn take_daily(
        &mut self,
        api: &Arc<str>,
        cap: u32,
        window: Duration,
        now: Instant,
    ) -> Result<(), Error> {
        let taken = self.daily.entry(api.clone()).or_default();
        while taken
            .front()
            .is_some_and(|&t| now.saturating_duration_since(t) >= window)
        {
            taken.pop_front();
        }
        if taken.len() >= cap as usize {
            let oldest = taken.front().copied().unwrap_or(now);
            return Err(Error::DailyCap {
                retry_after: (oldest + window)
                    .saturating_duration_since(now)
                    .max(Duration::from_secs(1)),
                known: true,
            });
        }
        taken.push_back(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pace::LaneSettings;

    #[tokio::test(start_paused = true)]
    async fn a_daily_cap_refuses_past_its_count_until_the_oldest_call_leaves_the_window() {
        let settings = LaneSettings::new(200, 5, Duration::from_millis(20), 64, 1000);
        let api: Arc<str> = "all_member_push/im_push".into();
        let mut lanes = Lanes::new(std::slice::from_ref(&api), &settings, Instant::now());
        let window = DAY + Duration::from_secs(40);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(lanes.take_daily(&api, 3, window, start).is_ok());
        }
        let later = start + Duration::from_secs(3600);
        match lanes.take_daily(&api, 3, window, later) {
            Err(Error::DailyCap {
                retry_after,
                known: true,
            }) => {
                assert_eq!(retry_after, window - Duration::from_secs(3600));
            }
            other => panic!("{other:?}"),
        }
        assert!(lanes.take_daily(&api, 3, window, start + window).is_ok());
    }
}
