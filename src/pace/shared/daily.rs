//! An API's daily cap in Redis: every replica's calls of the day counted in one sorted set, so
//! that together they never pass the cap.

use std::time::Duration;

use super::Shared;

/// What Redis said of a daily call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Daily {
    /// Taken: it may be sent.
    Taken,
    /// The cap is spent until then.
    Spent(Duration),
}

impl Shared {
    /// Takes one of `api`'s calls of any `window` (a day and the longest a call may then take to
    /// reach Tencent), at most `cap`; `None` when Redis does not answer (it is then away).
    pub async fn take_daily(&self, api: &str, cap: u32, window: Duration) -> Option<Daily> {
        if !self.is_up() {
            return None;
        }
        let mut conn = self.connection()?;
        let mut call = self.daily.prepare_invoke();
        call.key(format!("{}:day:{api}", self.prefix))
            .arg(cap)
            .arg(window.as_micros() as u64)
            .arg(format!("{}:{:016x}", self.id, rand::random::<u64>()));
        let answer = call.invoke_async::<(i64, i64)>(&mut conn);
        match tokio::time::timeout(self.target.timeout, answer).await {
            Ok(Ok((0, _))) => Some(Daily::Taken),
            Ok(Ok((_, later))) => Some(Daily::Spent(Duration::from_micros(later.max(0) as u64))),
            Ok(Err(e)) => self.down(&self.scrub(&e.to_string())),
            Err(_) => self.down("no answer in time"),
        }
    }
}
