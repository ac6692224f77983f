//! One API's pacing numbers, derived from its limit (the catalogue's, or `[limits.api]`'s), the
//! replica's share of it and the window guard: the spacing of its sends, the cap its send log
//! holds them to, the window that cap counts in, and how many of its calls may fly at once.

use std::time::Duration;

use super::lanes::LaneSettings;
use crate::config::LimitsConfig;
use crate::tencent::apis::Limit;

/// How one API's lane is paced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApiPace {
    /// Spacing of its sends: any period plus the guard holds at most `cap` of them.
    pub interval: Duration,
    /// Most sends within `window` (0: no check).
    pub cap: usize,
    /// The limit's period plus the guard.
    pub window: Duration,
    /// Most calls in flight (sent, not yet answered); 0: no bound beyond `cap`.
    pub max_in_flight: usize,
}

/// An API's paces: at this replica's share (what it keeps to on its own) and at the full limit
/// (what a shared budget spaces and caps by).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paces {
    /// At the replica's share.
    pub local: ApiPace,
    /// At the full limit; calls in flight stay at the share (a stalled upstream releases every
    /// replica's at once).
    pub full: ApiPace,
}

impl ApiPace {
    /// The lane settings' own numbers: an API the pacer was given no limit for.
    pub(crate) fn of_settings(settings: &LaneSettings) -> ApiPace {
        ApiPace {
            interval: settings.app_interval,
            cap: settings.app_cap,
            window: settings.send_window,
            max_in_flight: settings.max_in_flight,
        }
    }

    /// `units` units per `period`, for calls of at most `most` units each, spaced so that any
    /// period plus `guard` holds at most that many: a call reserves `interval` per unit, and
    /// the last call in a window may carry `most`, so what comes before it keeps `most - 1`
    /// below the limit. At least `most` units fit, and `max_in_flight` is at least `most`
    /// (in units too): a call of `most` must be able to leave.
    fn new(units: u32, most: u32, period: Duration, guard: Duration, in_flight: usize) -> ApiPace {
        let units = units.max(most).max(1);
        ApiPace {
            interval: (period + guard) / (units - most.max(1) + 1),
            cap: units as usize,
            window: period + guard,
            max_in_flight: in_flight.max(most as usize),
        }
    }
}

impl Paces {
    /// The paces of an API limited by `limit`, for a replica keeping `share` of it. A
    /// recipient-counted API is paced in recipients: a call costs as many units as it names.
    pub(crate) fn new(limit: Limit, limits: &LimitsConfig, share: f64) -> Paces {
        let (units, period, most) = (limit.count, limit.per.duration(), limit.most());
        // One second's worth of units (at least one) unless `max_in_flight_per_api` says.
        let per_second = (u64::from(units) * 1000 / period.as_millis().max(1) as u64).max(1);
        let in_flight = match limits.max_in_flight_per_api {
            0 => per_second as u32,
            set => set.saturating_mul(most),
        };
        let in_flight = scaled(in_flight, share) as usize;
        let guard = limits.window_guard;
        Paces {
            local: ApiPace::new(scaled(units, share), most, period, guard, in_flight),
            full: ApiPace::new(units, most, period, guard, in_flight),
        }
    }

    /// The paces from lane settings alone (tests, and an API without a limit).
    pub(crate) fn of_settings(local: &LaneSettings, full: &LaneSettings) -> Paces {
        Paces {
            local: ApiPace::of_settings(local),
            full: ApiPace::of_settings(full),
        }
    }
}

/// `limit` scaled by `share`, rounded down, at least 1.
pub(super) fn scaled(limit: u32, share: f64) -> u32 {
    ((f64::from(limit) * share).floor() as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tencent::apis;

    fn limits() -> LimitsConfig {
        let toml = "[tencent]\nsdkappid = 1\nsecret_key = \"k\"\n";
        crate::config::Config::from_toml(toml)
            .expect("the defaults")
            .limits
    }

    #[test]
    fn a_per_minute_recipient_limit_spaces_each_recipient_and_caps_them_in_the_minute() {
        let limits = limits();
        let limit = limits.limit_of("openim/batchsendmsg").expect("catalogued");
        let paces = Paces::new(limit, &limits, 1.0);
        let guard = limits.window_guard;
        let window = Duration::from_secs(60) + guard;
        assert_eq!(paces.full.cap, 12_000);
        assert_eq!(paces.full.window, window);
        // The last call in a window may carry 500: what comes before it keeps 499 below.
        assert_eq!(paces.full.interval, window / 11_501);
        // 200 recipients a second, but a call of 500 must be able to fly.
        assert_eq!(paces.full.max_in_flight, 500);
        // A replica on half the budget spaces its recipients twice as far apart.
        let half = Paces::new(limit, &limits, 0.5);
        assert_eq!(half.local.cap, 6_000);
        assert_eq!(half.local.interval, window / 5_501);
        assert_eq!(half.full, paces.full);
        // However small its share, a call of 500 still fits.
        let tiny = Paces::new(limit, &limits, 0.01);
        assert_eq!((tiny.local.cap, tiny.local.interval), (500, window));
    }

    #[test]
    fn a_standard_api_is_paced_as_before() {
        let limits = limits();
        let limit = limits.limit_of(apis::APIS[0].name).expect("catalogued");
        let paces = Paces::new(limit, &limits, 1.0);
        let settings = super::super::follow::full_settings(&limits, 1.0);
        assert_eq!(paces.full, ApiPace::of_settings(&settings));
    }
}
