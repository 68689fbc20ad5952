//! Prometheus metrics: requests, latency, logins, password-hashing slots, sessions,
//! housekeeping.
//!
//! Each service instance has its own registry (no global state), so tests that run many apps
//! in one process each see their own numbers.

use std::time::Duration;

use axum::http::StatusCode;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::housekeeping::{Interrupted, Swept};
use crate::store::SessionCacheStats;

/// The `Content-Type` of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Route label of requests that matched no route (their raw paths are not labels: unbounded).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Where a password login came from; also the `detail` of its audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginChannel {
    /// `POST /token`.
    Api,
    /// The login page.
    Page,
}

impl LoginChannel {
    const ALL: [Self; 2] = [Self::Api, Self::Page];

    /// The metric label, and the `detail` of the login's audit events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Page => "page",
        }
    }
}

/// How a password login ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// The password was right and a session started.
    Success,
    BadCredentials,
    /// The right password on a disabled account.
    Inactive,
    /// The right password on an address not yet confirmed, where confirming is required.
    Unverified,
}

impl LoginOutcome {
    const ALL: [Self; 4] = [
        Self::Success,
        Self::BadCredentials,
        Self::Inactive,
        Self::Unverified,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::BadCredentials => "bad_credentials",
            Self::Inactive => "inactive",
            Self::Unverified => "unverified",
        }
    }
}

/// The `kind` labels of `gatehouse_housekeeping_deleted_total`, in the order of `Swept`'s fields.
const SWEPT_KINDS: [&str; 4] = ["sessions", "email_tokens", "events", "login_failures"];

/// Values read at scrape time from the parts that own them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub hash_slots: usize,
    pub hash_slots_in_use: usize,
    pub hash_waiting: usize,
    /// `None` when the database could not be asked; the last value is kept.
    pub active_sessions: Option<i64>,
    pub session_cache: SessionCacheStats,
}

pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    logins: IntCounterVec,
    hash_slots: IntGauge,
    hash_slots_in_use: IntGauge,
    hash_waiting: IntGauge,
    active_sessions: IntGauge,
    session_cache_hits: IntCounter,
    session_cache_misses: IntCounter,
    housekeeping_deleted: IntCounterVec,
    housekeeping_failures: IntCounter,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "gatehouse_http_requests_total",
                "HTTP requests by method, matched route and status",
            ),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "gatehouse_http_request_duration_seconds",
                "Time to answer an HTTP request, by method and matched route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["method", "route"],
        )
        .expect("valid metric");
        let logins = IntCounterVec::new(
            Opts::new(
                "gatehouse_logins_total",
                "Password logins by channel (api: POST /token; page: the login page) and outcome",
            ),
            &["channel", "outcome"],
        )
        .expect("valid metric");
        for channel in LoginChannel::ALL {
            for outcome in LoginOutcome::ALL {
                logins.with_label_values(&[channel.as_str(), outcome.label()]);
            }
        }
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric");
        let hash_slots = gauge(
            "gatehouse_password_hash_slots",
            "Password hashes that may run at once (one per core)",
        );
        let hash_slots_in_use = gauge(
            "gatehouse_password_hash_slots_in_use",
            "Password hashes running now",
        );
        let hash_waiting = gauge(
            "gatehouse_password_hash_waiting",
            "Password hashes waiting for a free slot",
        );
        let active_sessions = gauge(
            "gatehouse_active_sessions",
            "Unexpired browser sessions in the database",
        );
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric");
        let session_cache_hits = counter(
            "gatehouse_session_cache_hits_total",
            "Signed-in requests whose session was found in memory",
        );
        let session_cache_misses = counter(
            "gatehouse_session_cache_misses_total",
            "Signed-in requests whose session was read from the database",
        );
        let housekeeping_deleted = IntCounterVec::new(
            Opts::new(
                "gatehouse_housekeeping_deleted_total",
                "Rows housekeeping deleted, by kind: sessions, email_tokens, events, login_failures",
            ),
            &["kind"],
        )
        .expect("valid metric");
        for kind in SWEPT_KINDS {
            housekeeping_deleted.with_label_values(&[kind]);
        }
        let housekeeping_failures = counter(
            "gatehouse_housekeeping_failures_total",
            "Housekeeping sweeps that failed (the database did not answer, say)",
        );
        let metrics = Self {
            registry,
            requests,
            latency,
            logins,
            hash_slots,
            hash_slots_in_use,
            hash_waiting,
            active_sessions,
            session_cache_hits,
            session_cache_misses,
            housekeeping_deleted,
            housekeeping_failures,
        };
        for collector in metrics.collectors() {
            metrics
                .registry
                .register(collector)
                .expect("metric names are unique");
        }
        metrics
    }

    fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.requests.clone()),
            Box::new(self.latency.clone()),
            Box::new(self.logins.clone()),
            Box::new(self.hash_slots.clone()),
            Box::new(self.hash_slots_in_use.clone()),
            Box::new(self.hash_waiting.clone()),
            Box::new(self.active_sessions.clone()),
            Box::new(self.session_cache_hits.clone()),
            Box::new(self.session_cache_misses.clone()),
            Box::new(self.housekeeping_deleted.clone()),
            Box::new(self.housekeeping_failures.clone()),
        ]
    }

    /// Counts one answered request.
    pub fn observe_request(
        &self,
        method: &str,
        route: &str,
        status: StatusCode,
        elapsed: Duration,
    ) {
        self.requests
            .with_label_values(&[method, route, status.as_str()])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(elapsed.as_secs_f64());
    }

    pub fn count_login(&self, channel: LoginChannel, outcome: LoginOutcome) {
        self.logins
            .with_label_values(&[channel.as_str(), outcome.label()])
            .inc();
    }

    /// Counts what one sweep deleted, and whether the database stopped it.
    pub fn count_sweep(&self, outcome: &Result<Swept, Interrupted>) {
        let swept = match outcome {
            Ok(swept) => swept,
            Err(interrupted) => {
                self.housekeeping_failures.inc();
                &interrupted.swept
            }
        };
        let counts = [
            swept.sessions,
            swept.email_tokens,
            swept.events,
            swept.login_failures,
        ];
        for (kind, count) in SWEPT_KINDS.into_iter().zip(counts) {
            self.housekeeping_deleted
                .with_label_values(&[kind])
                .inc_by(count);
        }
    }

    /// Everything, in the Prometheus text format, after setting the gauges read at scrape time.
    pub fn render(&self, gauges: Gauges) -> String {
        let as_i64 = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.hash_slots.set(as_i64(gauges.hash_slots));
        self.hash_slots_in_use.set(as_i64(gauges.hash_slots_in_use));
        self.hash_waiting.set(as_i64(gauges.hash_waiting));
        if let Some(sessions) = gauges.active_sessions {
            self.active_sessions.set(sessions);
        }
        // The cache counts for itself; the counters catch up to it.
        let catch_up = |counter: &IntCounter, total: u64| {
            counter.inc_by(total.saturating_sub(counter.get()));
        };
        catch_up(&self.session_cache_hits, gauges.session_cache.hits);
        catch_up(&self.session_cache_misses, gauges.session_cache.misses);
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding into memory cannot fail");
        String::from_utf8(buffer).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_logins_and_gauges() {
        let metrics = Metrics::new();
        metrics.observe_request(
            "GET",
            "/notes/{id}",
            StatusCode::NOT_FOUND,
            Duration::from_millis(3),
        );
        metrics.count_login(LoginChannel::Page, LoginOutcome::BadCredentials);
        let text = metrics.render(Gauges {
            hash_slots: 2,
            hash_slots_in_use: 1,
            hash_waiting: 0,
            active_sessions: Some(7),
            session_cache: SessionCacheStats { hits: 5, misses: 2 },
        });
        assert!(text.contains(
            r#"gatehouse_http_requests_total{method="GET",route="/notes/{id}",status="404"} 1"#
        ));
        assert!(
            text.contains(r#"gatehouse_logins_total{channel="page",outcome="bad_credentials"} 1"#)
        );
        assert!(
            text.contains(r#"gatehouse_logins_total{channel="api",outcome="bad_credentials"} 0"#)
        );
        assert!(text.contains(r#"gatehouse_logins_total{channel="page",outcome="success"} 0"#));
        assert!(text.contains("gatehouse_password_hash_slots_in_use 1"));
        assert!(text.contains("gatehouse_active_sessions 7"));
        assert!(text.contains("gatehouse_session_cache_hits_total 5"));
        assert!(text.contains("gatehouse_session_cache_misses_total 2"));
        let again = metrics.render(Gauges {
            session_cache: SessionCacheStats { hits: 9, misses: 2 },
            ..Gauges::default()
        });
        assert!(again.contains("gatehouse_session_cache_hits_total 9"));
        let swept = Swept {
            sessions: 3,
            events: 2,
            ..Swept::default()
        };
        metrics.count_sweep(&Ok(swept));
        metrics.count_sweep(&Ok(swept));
        // A sweep stopped part-way counts what it deleted before, and the failure.
        let stopped = Interrupted {
            swept: Swept {
                sessions: 1,
                ..Swept::default()
            },
            cause: crate::store::StoreError::NotFound,
        };
        metrics.count_sweep(&Err(stopped));
        let swept = metrics.render(Gauges::default());
        assert!(swept.contains(r#"gatehouse_housekeeping_deleted_total{kind="sessions"} 7"#));
        assert!(swept.contains(r#"gatehouse_housekeeping_deleted_total{kind="events"} 4"#));
        assert!(swept.contains(r#"gatehouse_housekeeping_deleted_total{kind="email_tokens"} 0"#));
        assert!(swept.contains("gatehouse_housekeeping_failures_total 1"));
        assert!(text.contains("# TYPE gatehouse_http_request_duration_seconds histogram"));
    }
}
