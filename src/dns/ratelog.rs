//! Rate-limited info lines per source: the first refused request from an address is logged at
//! info, later ones only at debug, and at most once a `window` an info summary says how many
//! were refused since. Bounded memory (`cap` sources; stale ones are forgotten first; when
//! every slot is fresh a new source stays at debug). No clock: `now` (Unix seconds) comes in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// What to log at info for one refused request.
#[derive(Debug, PartialEq, Eq)]
pub enum Say {
    /// The first from this source (or the first after a quiet window): log it.
    First,
    /// A window has passed: `count` were refused since `since` (this one included).
    Summary { count: u64, since: u64 },
    /// Nothing at info.
    Quiet,
}

pub struct RateLog {
    window: u64,
    cap: usize,
    /// std Mutex: held for one map update, never across `.await`.
    seen: Mutex<HashMap<IpAddr, Seen>>,
}

struct Seen {
    /// When the current window began (the last info line).
    since: u64,
    /// Refused since then, not yet reported at info.
    count: u64,
}

impl RateLog {
    pub fn new(window: u64, cap: usize) -> RateLog {
        RateLog {
            window,
            cap,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// One more refused request from `src` at `now`.
    pub fn note(&self, src: IpAddr, now: u64) -> Say {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = seen.get_mut(&src) {
            if now < s.since.saturating_add(self.window) {
                s.count += 1;
                return Say::Quiet;
            }
            let say = match s.count {
                0 => Say::First,
                n => Say::Summary {
                    count: n + 1,
                    since: s.since,
                },
            };
            *s = Seen {
                since: now,
                count: 0,
            };
            return say;
        }
        if seen.len() >= self.cap {
            let window = self.window;
            seen.retain(|_, s| now < s.since.saturating_add(window));
            if seen.len() >= self.cap {
                return Say::Quiet;
            }
        }
        seen.insert(
            src,
            Seen {
                since: now,
                count: 0,
            },
        );
        Say::First
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_at_once_then_one_summary_a_window_per_source() {
        let log = RateLog::new(60, 2);
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let c: IpAddr = "10.0.0.3".parse().expect("ip");
        // t=0: a's first refusal is logged; the next 99 in the minute are not.
        assert_eq!(log.note(a, 0), Say::First);
        for t in 0..99 {
            assert_eq!(log.note(a, t % 60), Say::Quiet);
        }
        // b is another source: its own first line. c finds both slots fresh: quiet.
        assert_eq!(log.note(b, 10), Say::First);
        assert_eq!(log.note(c, 10), Say::Quiet);
        // t=60: a's window is over: one summary of all 100 (and this one).
        assert_eq!(
            log.note(a, 60),
            Say::Summary {
                count: 100,
                since: 0
            }
        );
        // b was quiet for a window: its next refusal is a first line again.
        assert_eq!(log.note(b, 200), Say::First);
        // t=200: a's slot is stale, so c gets it.
        assert_eq!(log.note(c, 200), Say::First);
    }
}
