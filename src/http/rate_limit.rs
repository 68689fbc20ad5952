//! Per client address rate limits: one token bucket per address and area (login, sign-up,
//! password-reset requests), refilled on `AppState.clock`, so tests move time instead of
//! sleeping.
//!
//! A small keyed bucket map rather than the `governor` crate: the buckets must follow the
//! service's clock (tests drive a `ManualClock`), keys must be masked (an IPv6 client owns a
//! whole /64), memory must stay bounded under a flood from many addresses (at most
//! `MAX_TRACKED` keys; full buckets are dropped first), and a few dozen lines do all of it
//! without another dependency. The limits are per instance; the login slow-down per account,
//! which matters across instances, lives in the database (`auth::throttle`).
//!
//! Attach a limit to a handler with an extractor: `PerIp<Login>` answers 429 JSON
//! (`{"detail": "Too many requests"}` with `Retry-After`), `PerIpPage<Login>` a readable page.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use chrono::{DateTime, Utc};

use super::AppState;
use super::pages::PageError;
use crate::audit::{self, EventKind};
use crate::auth::sessions::ClientMeta;
use crate::config::{RateLimit, RateLimits};
use crate::error::Error;

/// Keys tracked at most (about 100 bytes each); beyond, full buckets are forgotten first.
const MAX_TRACKED: usize = 100_000;

/// What a bucket limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Area {
    Login,
    Signup,
    PasswordReset,
}

impl Area {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Signup => "signup",
            Self::PasswordReset => "password_reset",
        }
    }

    fn limit(self, limits: &RateLimits) -> RateLimit {
        match self {
            Self::Login => limits.login,
            Self::Signup => limits.signup,
            Self::PasswordReset => limits.password_reset,
        }
    }
}

/// The areas as types, for the extractors: `PerIp<Login>`.
pub trait LimitArea: Send + Sync + 'static {
    const AREA: Area;
}

/// `POST /token` and `POST /login`.
pub struct Login;
/// `POST /users/` and `POST /signup`.
pub struct Signup;
/// The requests that email an account: `POST /password-reset`, `POST /forgot-password`,
/// `POST /verify-email/resend` and `POST /verify-email/send-again`.
pub struct PasswordReset;

impl LimitArea for Login {
    const AREA: Area = Area::Login;
}
impl LimitArea for Signup {
    const AREA: Area = Area::Signup;
}
impl LimitArea for PasswordReset {
    const AREA: Area = Area::PasswordReset;
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: DateTime<Utc>,
    /// Whether a refusal was already recorded since the bucket last let a request through.
    refusing: bool,
}

/// A refused request: how long until one token is back, and whether it is the first refusal
/// of this run (so the audit trail gets one event per run, not one per request of a flood).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub retry_after: u64,
    pub first: bool,
}

/// Token buckets keyed by area and client address.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<(Area, IpAddr), Bucket>>,
}

impl RateLimiter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one token for `ip` in `area`, or says how long to wait.
    pub fn take(
        &self,
        area: Area,
        ip: IpAddr,
        limit: RateLimit,
        now: DateTime<Utc>,
    ) -> Result<(), Refusal> {
        let burst = f64::from(limit.burst);
        let per_second = burst / limit.period.as_secs_f64().max(0.001);
        let refilled = |b: &Bucket| {
            let elapsed = (now - b.updated).as_seconds_f64().max(0.0);
            (b.tokens + elapsed * per_second).min(burst)
        };
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let key = (area, mask(ip));
        if !buckets.contains_key(&key) && buckets.len() >= MAX_TRACKED {
            // Full buckets carry no information: forget them first.
            buckets.retain(|_, b| refilled(b) < burst);
            if buckets.len() >= MAX_TRACKED {
                tracing::warn!(
                    tracked = buckets.len(),
                    "rate limiter full: forgetting every bucket"
                );
                buckets.clear();
            }
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            updated: now,
            refusing: false,
        });
        bucket.tokens = refilled(bucket);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            bucket.refusing = false;
            return Ok(());
        }
        let wait = ((1.0 - bucket.tokens) / per_second).ceil().max(1.0);
        let first = !bucket.refusing;
        bucket.refusing = true;
        Err(Refusal {
            retry_after: wait as u64,
            first,
        })
    }

    /// How many keys are tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.lock().expect("rate limiter lock").len()
    }
}

/// The part of an address that names one client: IPv4 whole, IPv6 by its /64.
fn mask(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the right-most
/// address of `X-Forwarded-For` that is not a trusted proxy itself (entries further left
/// are whatever the client claimed, and never believed).
///
/// The walk goes from the right, the end our proxies append to, and stops at the first
/// entry that is not an address: anything left of it came from the client too. (Reading
/// from the left instead let a client send `X-Forwarded-For: <any address>, x` and be
/// counted as that address.)
pub fn client_ip(parts: &Parts, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip())?;
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let entries: Vec<&str> = parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for entry in entries.into_iter().rev() {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(client)
}

/// Takes a token for the request's client; a refusal becomes a 429 error (recorded once per
/// run in the audit trail).
async fn check(parts: &Parts, state: &AppState, area: Area) -> Result<(), Error> {
    let abuse = &state.config.abuse;
    let Some(ip) = client_ip(parts, &abuse.trusted_proxies) else {
        // Served without the client's address (`http::app_with` without connect info): no
        // client can be told from another. Said once, as it holds for every request.
        static SAID: std::sync::Once = std::sync::Once::new();
        SAID.call_once(|| {
            tracing::warn!("rate limits are off: the server gives no client address; serve the app with into_make_service_with_connect_info::<SocketAddr>()");
        });
        return Ok(());
    };
    let limit = area.limit(&abuse.rate_limits);
    match state.limiter.take(area, ip, limit, state.clock.now()) {
        Ok(()) => Ok(()),
        Err(refusal) => {
            if refusal.first {
                tracing::warn!(%ip, area = area.as_str(), "rate limit reached");
                let client = ClientMeta {
                    ip: Some(ip.to_string()),
                    user_agent: None,
                };
                let detail = format!("rate limit: {}", area.as_str());
                audit::record_detail(state, EventKind::Throttled, None, &client, detail).await;
            }
            Err(Error::TooManyRequests {
                detail: "Too many requests".into(),
                retry_after: Some(refusal.retry_after),
            })
        }
    }
}

/// A request within its client's limit for area `A`; over it, a 429 JSON error.
pub struct PerIp<A>(PhantomData<A>);

impl<A: LimitArea> FromRequestParts<AppState> for PerIp<A> {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Error> {
        check(parts, state, A::AREA).await?;
        Ok(Self(PhantomData))
    }
}

/// Like `PerIp`, for a page form: over the limit, a readable page (429, `Retry-After`).
pub struct PerIpPage<A>(PhantomData<A>);

impl<A: LimitArea> FromRequestParts<AppState> for PerIpPage<A> {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        match check(parts, state, A::AREA).await {
            Ok(()) => Ok(Self(PhantomData)),
            Err(Error::TooManyRequests { retry_after, .. }) => {
                let wait = retry_after.unwrap_or(60);
                Err(PageError::Service(Error::TooManyRequests {
                    detail: format!(
                        "Too many attempts from your network. Please wait {wait} seconds and try again."
                    ),
                    retry_after,
                }))
            }
            Err(other) => Err(other.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(raw: &str) -> IpAddr {
        raw.parse().unwrap()
    }

    #[test]
    fn a_bucket_empties_then_refills_with_time() {
        let limiter = RateLimiter::new();
        let limit = RateLimit::per_minute(3);
        let t0 = Utc::now();
        for _ in 0..3 {
            assert!(limiter.take(Area::Login, ip("10.0.0.1"), limit, t0).is_ok());
        }
        let refused = limiter
            .take(Area::Login, ip("10.0.0.1"), limit, t0)
            .unwrap_err();
        assert_eq!(
            refused,
            Refusal {
                retry_after: 20,
                first: true
            }
        );
        let again = limiter
            .take(Area::Login, ip("10.0.0.1"), limit, t0)
            .unwrap_err();
        assert!(!again.first);
        assert!(
            limiter
                .take(Area::Signup, ip("10.0.0.1"), limit, t0)
                .is_ok(),
            "own area"
        );
        assert!(
            limiter.take(Area::Login, ip("10.0.0.2"), limit, t0).is_ok(),
            "own address"
        );
        let later = t0 + chrono::Duration::seconds(20);
        assert!(
            limiter
                .take(Area::Login, ip("10.0.0.1"), limit, later)
                .is_ok()
        );
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_64() {
        let limiter = RateLimiter::new();
        let limit = RateLimit::per_minute(1);
        let now = Utc::now();
        assert!(
            limiter
                .take(Area::Login, ip("2001:db8::1"), limit, now)
                .is_ok()
        );
        assert!(
            limiter
                .take(Area::Login, ip("2001:db8::2"), limit, now)
                .is_err()
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_flood_of_addresses() {
        let limiter = RateLimiter::new();
        let limit = RateLimit::per_minute(5);
        let now = Utc::now();
        for n in 0..(MAX_TRACKED as u32 + 10) {
            let addr = IpAddr::V4(std::net::Ipv4Addr::from(n));
            let _ = limiter.take(Area::Login, addr, limit, now);
        }
        assert!(limiter.tracked() <= MAX_TRACKED);
    }

    fn parts(peer: &str, forwarded: Option<&str>) -> Parts {
        let mut request = axum::http::Request::builder().uri("/token");
        if let Some(f) = forwarded {
            request = request.header("x-forwarded-for", f);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        let addr: SocketAddr = format!("{peer}:4000").parse().unwrap();
        parts.extensions.insert(ConnectInfo(addr));
        parts
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().unwrap()];
        let spoofed = parts("203.0.113.9", Some("1.2.3.4"));
        assert_eq!(client_ip(&spoofed, &trusted), Some(ip("203.0.113.9")));
        let proxied = parts("10.0.0.5", Some("1.2.3.4, 198.51.100.7, 10.0.0.6"));
        assert_eq!(client_ip(&proxied, &trusted), Some(ip("198.51.100.7")));
        let direct = parts("10.0.0.5", None);
        assert_eq!(client_ip(&direct, &trusted), Some(ip("10.0.0.5")));
        assert_eq!(client_ip(&proxied, &[]), Some(ip("10.0.0.5")));
        // A client's own entries, even one that is not an address, never hide the one our
        // proxy appended.
        let claimed = parts("10.0.0.5", Some("6.6.6.6, not-an-address, 198.51.100.7"));
        assert_eq!(client_ip(&claimed, &trusted), Some(ip("198.51.100.7")));
        // Nothing believable after our proxy: the proxy itself is the client.
        let garbled = parts("10.0.0.5", Some("6.6.6.6, not-an-address"));
        assert_eq!(client_ip(&garbled, &trusted), Some(ip("10.0.0.5")));
    }
}
