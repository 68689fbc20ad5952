//! One typed configuration, read from the environment (and a `.env` file, which `cli` loads
//! first so real environment variables win).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use rand::RngCore;

use crate::auth::password::MAX_STORED_MEMORY_KIB;

/// The key that signs access tokens. `Debug` never shows it.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl SecretKey {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

/// Argon2id cost parameters (defaults: OWASP's m=19456 KiB, t=2, p=1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// How long a session lives at most (absolute) and without use (idle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    pub absolute: Duration,
    pub idle: Duration,
}

/// Lifetimes per kind of session (OWASP ASVS V7: both an idle and an absolute limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLifetimes {
    /// A browser sign-in without "Remember me"; its cookie also ends with the browser.
    pub browser: Lifetime,
    /// A browser sign-in with "Remember me": a persistent cookie.
    pub remembered: Lifetime,
    /// An API login: the refresh-token family.
    pub api: Lifetime,
}

const HOUR: u64 = 3600;
const DAY: u64 = 24 * HOUR;

impl Default for SessionLifetimes {
    fn default() -> Self {
        let of = |absolute, idle| Lifetime {
            absolute: Duration::from_secs(absolute),
            idle: Duration::from_secs(idle),
        };
        Self {
            browser: of(12 * HOUR, 2 * HOUR),
            remembered: of(30 * DAY, 14 * DAY),
            api: of(30 * DAY, 14 * DAY),
        }
    }
}

impl SessionLifetimes {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let read = |name: &str, unit: u64, default: Duration| {
            lifetime(name, unit, default.as_secs() / unit)
        };
        Ok(Self {
            browser: Lifetime {
                absolute: read("SESSION_LIFETIME_HOURS", HOUR, d.browser.absolute)?,
                idle: read("SESSION_IDLE_MINUTES", 60, d.browser.idle)?,
            },
            remembered: Lifetime {
                absolute: read("REMEMBER_ME_DAYS", DAY, d.remembered.absolute)?,
                idle: read("REMEMBER_ME_IDLE_DAYS", DAY, d.remembered.idle)?,
            },
            api: Lifetime {
                absolute: read("REFRESH_TOKEN_LIFETIME_DAYS", DAY, d.api.absolute)?,
                idle: read("REFRESH_TOKEN_IDLE_DAYS", DAY, d.api.idle)?,
            },
        })
    }
}

/// How access tokens are signed and which are accepted (README, "Signing keys"). Holds the
/// key files' paths, never key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtConfig {
    /// `JWT_SIGNING_KEY_FILE`: an Ed25519 PKCS#8 PEM; when set, tokens are signed with EdDSA.
    pub signing_key_file: Option<PathBuf>,
    /// `JWT_VERIFICATION_KEY_FILES`: Ed25519 keys (private or public PEM) still accepted and
    /// published, such as the previous signing key during a rotation.
    pub verification_key_files: Vec<PathBuf>,
    /// `JWT_ACCEPT_HS256`: whether HS256 tokens signed with `SECRET_KEY` (the tutorial's) are
    /// still accepted once tokens are signed with EdDSA.
    pub accept_hs256: bool,
    /// `JWT_ISSUER`: written as `iss` and required on every token.
    pub issuer: Option<String>,
    /// `JWT_AUDIENCE`: written as `aud` and required on every token.
    pub audience: Option<String>,
}

impl Default for JwtConfig {
    fn default() -> Self {
        Self {
            signing_key_file: None,
            verification_key_files: Vec::new(),
            accept_hs256: true,
            issuer: None,
            audience: None,
        }
    }
}

impl JwtConfig {
    fn from_env() -> anyhow::Result<Self> {
        let signing_key_file = var("JWT_SIGNING_KEY_FILE").map(|p| PathBuf::from(p.trim()));
        let accept_hs256 = match var("JWT_ACCEPT_HS256") {
            None => true,
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => bail!("JWT_ACCEPT_HS256={raw:?} is not valid: expected true or false"),
            },
        };
        if !accept_hs256 && signing_key_file.is_none() {
            bail!(
                "JWT_ACCEPT_HS256=false needs JWT_SIGNING_KEY_FILE: tokens are signed with HS256 without it"
            );
        }
        Ok(Self {
            signing_key_file,
            verification_key_files: var("JWT_VERIFICATION_KEY_FILES")
                .map(|v| {
                    v.split(',')
                        .map(str::trim)
                        .filter(|p| !p.is_empty())
                        .map(PathBuf::from)
                        .collect()
                })
                .unwrap_or_default(),
            accept_hs256,
            issuer: var("JWT_ISSUER").map(|v| v.trim().to_string()),
            audience: var("JWT_AUDIENCE").map(|v| v.trim().to_string()),
        })
    }
}

/// A token bucket's size: `burst` requests at once, refilled evenly over `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub burst: u32,
    pub period: Duration,
}

impl RateLimit {
    pub const fn per_minute(burst: u32) -> Self {
        Self {
            burst,
            period: Duration::from_secs(60),
        }
    }

    pub const fn per_hour(burst: u32) -> Self {
        Self {
            burst,
            period: Duration::from_secs(3600),
        }
    }

    /// `10/minute`, `5/hour`, `2/second` (also `min`, `h`, `s`).
    pub fn parse(raw: &str) -> anyhow::Result<Self> {
        let (count, unit) = raw
            .split_once('/')
            .with_context(|| format!("{raw:?} is not COUNT/UNIT, such as 10/minute"))?;
        let burst: u32 = count.trim().parse().with_context(|| format!("{raw:?}"))?;
        let period = match unit.trim() {
            "s" | "sec" | "second" => 1,
            "m" | "min" | "minute" => 60,
            "h" | "hour" => 3600,
            "d" | "day" => 86_400,
            other => bail!("{raw:?}: unknown unit {other:?} (second, minute, hour, day)"),
        };
        if burst == 0 {
            bail!("{raw:?}: the count must be at least 1");
        }
        Ok(Self {
            burst,
            period: Duration::from_secs(period),
        })
    }
}

/// Per client address limits (token buckets), one bucket per area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `POST /token` and the login page (`RATE_LIMIT_LOGIN`).
    pub login: RateLimit,
    /// `POST /users/` and the sign-up page (`RATE_LIMIT_SIGNUP`).
    pub signup: RateLimit,
    /// Requests that email an account: a password reset or a new verification link, API and
    /// page (`RATE_LIMIT_PASSWORD_RESET`).
    pub password_reset: RateLimit,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            login: RateLimit::per_minute(10),
            signup: RateLimit::per_hour(20),
            password_reset: RateLimit::per_hour(5),
        }
    }
}

/// The slow-down of an account after consecutive failed logins (NIST SP 800-63B rev. 4,
/// section 3.2.2): after `free_failures`, each further attempt waits `base_delay`, doubling
/// per failure up to `max_delay`; at `lock_after` (at most 100) only a password reset opens
/// the account to a login (`auth::throttle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    pub free_failures: u32,
    pub base_delay: Duration,
    pub max_delay: Duration,
    pub lock_after: u32,
}

impl Default for LoginThrottle {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay: Duration::from_secs(2),
            max_delay: Duration::from_secs(15 * 60),
            lock_after: 100,
        }
    }
}

/// Everything that defends the service against abuse (README, "Abuse protection").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbuseProtection {
    pub rate_limits: RateLimits,
    pub login_throttle: LoginThrottle,
    /// `PASSWORD_MIN_LENGTH` and the rules of new passwords.
    pub password_policy: crate::domain::PasswordPolicy,
    /// `TRUSTED_PROXIES`: addresses or networks whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// `PASSWORD_HASH_MAX_WAIT_MS`: how long a request waits for a hashing slot before a 503,
    /// and for its account's turn to be checked (`auth::throttle::CheckQueue`) before a 429.
    pub hash_max_wait: Duration,
}

impl Default for AbuseProtection {
    fn default() -> Self {
        Self {
            rate_limits: RateLimits::default(),
            login_throttle: LoginThrottle::default(),
            password_policy: Default::default(),
            trusted_proxies: Vec::new(),
            hash_max_wait: Duration::from_secs(2),
        }
    }
}

impl AbuseProtection {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let limit = |name: &str, default: RateLimit| -> anyhow::Result<RateLimit> {
            var(name).map_or(Ok(default), |raw| {
                RateLimit::parse(&raw).with_context(|| format!("{name}={raw:?} is not valid"))
            })
        };
        let min_chars: usize = parsed("PASSWORD_MIN_LENGTH", d.password_policy.min_chars)?;
        let allowed = crate::domain::PASSWORD_MIN_CHARS..=crate::domain::PASSWORD_MAX_CHARS;
        if !allowed.contains(&min_chars) {
            bail!("PASSWORD_MIN_LENGTH must be between 8 and 128 (got {min_chars})");
        }
        let trusted_proxies = var("TRUSTED_PROXIES")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(parse_network)
                    .collect::<anyhow::Result<Vec<_>>>()
            })
            .transpose()?
            .unwrap_or_default();
        Ok(Self {
            rate_limits: RateLimits {
                login: limit("RATE_LIMIT_LOGIN", d.rate_limits.login)?,
                signup: limit("RATE_LIMIT_SIGNUP", d.rate_limits.signup)?,
                password_reset: limit("RATE_LIMIT_PASSWORD_RESET", d.rate_limits.password_reset)?,
            },
            login_throttle: d.login_throttle,
            password_policy: crate::domain::PasswordPolicy { min_chars },
            trusted_proxies,
            hash_max_wait: Duration::from_millis(parsed(
                "PASSWORD_HASH_MAX_WAIT_MS",
                d.hash_max_wait.as_millis() as u64,
            )?),
        })
    }
}

/// `10.0.0.0/8`, or a single address (`127.0.0.1`, `::1`).
fn parse_network(raw: &str) -> anyhow::Result<ipnet::IpNet> {
    raw.parse::<ipnet::IpNet>()
        .or_else(|_| raw.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .with_context(|| format!("TRUSTED_PROXIES: {raw:?} is not an address or network"))
}

/// Email delivery and the email flows.
#[derive(Clone)]
pub struct MailConfig {
    /// `smtps://user:pass@host:465`, `smtp://host:587?tls=required` (STARTTLS); `None`
    /// writes messages to the outbox folder in the data directory.
    pub smtp_url: Option<String>,
    pub from: String,
    /// Refuse login until the user's email is verified.
    pub require_verification: bool,
    pub reset_token_ttl: Duration,
    pub verification_token_ttl: Duration,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            smtp_url: None,
            from: "Gatehouse <no-reply@localhost>".into(),
            require_verification: false,
            reset_token_ttl: Duration::from_secs(30 * 60),
            verification_token_ttl: Duration::from_secs(24 * HOUR),
        }
    }
}

impl fmt::Debug for MailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The SMTP URL carries the mail server's password.
        f.debug_struct("MailConfig")
            .field(
                "smtp_url",
                &self.smtp_url.as_deref().map(crate::store::redact_url),
            )
            .field("from", &self.from)
            .field("require_verification", &self.require_verification)
            .finish_non_exhaustive()
    }
}

impl MailConfig {
    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let reset_minutes = d.reset_token_ttl.as_secs() / 60;
        let verification_hours = d.verification_token_ttl.as_secs() / HOUR;
        Ok(Self {
            smtp_url: var("SMTP_URL"),
            from: var("MAIL_FROM").unwrap_or(d.from),
            require_verification: parsed("REQUIRE_EMAIL_VERIFICATION", false)?,
            reset_token_ttl: lifetime("PASSWORD_RESET_TOKEN_MINUTES", 60, reset_minutes)?,
            verification_token_ttl: lifetime(
                "EMAIL_VERIFICATION_TOKEN_HOURS",
                HOUR,
                verification_hours,
            )?,
        })
    }
}

/// Deleting what has ended (`crate::housekeeping`; README, "Operations").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Housekeeping {
    /// `HOUSEKEEPING_INTERVAL_SECONDS`: how often this process sweeps; `None` (0) leaves it
    /// to another instance or to `gatehouse housekeeping`.
    pub interval: Option<Duration>,
    /// `AUDIT_RETENTION_DAYS`: how long audit events are kept; `None` (0) keeps them all.
    pub audit_retention: Option<Duration>,
}

impl Default for Housekeeping {
    fn default() -> Self {
        Self {
            interval: Some(Duration::from_secs(10 * 60)),
            audit_retention: Some(Duration::from_secs(365 * DAY)),
        }
    }
}

impl Housekeeping {
    /// Longest interval between sweeps: a week.
    const MAX_INTERVAL_SECONDS: u64 = 7 * DAY;
    /// Longest audit retention that is not "forever": a century.
    const MAX_RETENTION_DAYS: u64 = 36_500;

    fn from_env() -> anyhow::Result<Self> {
        let d = Self::default();
        let seconds = parsed(
            "HOUSEKEEPING_INTERVAL_SECONDS",
            d.interval.map_or(0, |i| i.as_secs()),
        )?;
        if seconds != 0 && !(60..=Self::MAX_INTERVAL_SECONDS).contains(&seconds) {
            bail!(
                "HOUSEKEEPING_INTERVAL_SECONDS must be 0 (never) or 60 to {} (a week); got {seconds}",
                Self::MAX_INTERVAL_SECONDS
            );
        }
        let days = parsed(
            "AUDIT_RETENTION_DAYS",
            d.audit_retention.map_or(0, |r| r.as_secs() / DAY),
        )?;
        if days > Self::MAX_RETENTION_DAYS {
            bail!(
                "AUDIT_RETENTION_DAYS must be 0 (keep every event) or 1 to {}; got {days}",
                Self::MAX_RETENTION_DAYS
            );
        }
        let non_zero = |d: Duration| (!d.is_zero()).then_some(d);
        Ok(Self {
            interval: non_zero(Duration::from_secs(seconds)),
            audit_retention: non_zero(Duration::from_secs(days * DAY)),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: String,
    pub listen: SocketAddr,
    /// The address users open, used for links and to decide on `Secure` cookies.
    pub public_url: url::Url,
    pub data_dir: PathBuf,
    pub secret_key: SecretKey,
    pub access_token_ttl: Duration,
    pub sessions: SessionLifetimes,
    pub cors_origins: Vec<String>,
    pub hash_params: HashParams,
    /// How long a request waits for a database connection before answering 503.
    pub db_acquire_timeout: Duration,
    /// Live sessions kept in memory (`SESSION_CACHE_ENTRIES`, 0 turns the cache off).
    pub session_cache_entries: usize,
    /// PostgreSQL connections opened at start and kept open (`DATABASE_MIN_CONNECTIONS`).
    pub db_min_connections: u32,
    pub production: bool,
    pub jwt: JwtConfig,
    /// Rate limits, login throttling, password policy, trusted proxies.
    pub abuse: AbuseProtection,
    pub mail: MailConfig,
    pub housekeeping: Housekeeping,
}

/// Reads a variable; an empty value counts as unset.
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The origins allowed to call the API when `CORS_ORIGINS` is unset outside production: the
/// tutorial backend's list (its Next.js dev server on port 3000 among them).
pub const DEV_CORS_ORIGINS: [&str; 3] = [
    "http://localhost",
    "http://localhost:8080",
    "http://localhost:3000",
];

/// The longest lifetime any setting may give a session, token or link: ten years. Every
/// expiry is "now plus the lifetime", which a date library can only hold so far ahead.
const MAX_LIFETIME: u64 = 3650 * DAY;

/// A lifetime set in whole `unit`s of seconds (`name=<count>`): at least one, at most
/// `MAX_LIFETIME`.
fn lifetime(name: &str, unit: u64, default: u64) -> anyhow::Result<Duration> {
    let count: u64 = parsed(name, default)?;
    let max = MAX_LIFETIME / unit;
    if !(1..=max).contains(&count) {
        bail!("{name} must be from 1 to {max} (ten years); got {count}");
    }
    Ok(Duration::from_secs(count * unit))
}

fn parsed<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| anyhow::anyhow!("{name}={raw:?} is not valid: {e}")),
    }
}

/// `DATABASE_MIN_CONNECTIONS`: the default covers a burst of requests on both cores of a
/// small machine. At most half the pool (one more is kept for the session cache's listener):
/// while the database is down, sqlx holds a slot of the pool for each kept connection it tries
/// to reopen, backing off up to a minute between tries, and the rest is what requests have to
/// reconnect with when the database returns.
fn min_connections() -> anyhow::Result<u32> {
    let min = parsed("DATABASE_MIN_CONNECTIONS", 4)?;
    let most = crate::store::MAX_CONNECTIONS / 2;
    if min > most {
        bail!("DATABASE_MIN_CONNECTIONS must be at most {most} (half the pool; got {min})");
    }
    Ok(min)
}

impl Config {
    /// Builds the configuration from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let production = match var("GATEHOUSE_ENV").map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(env) if env == "development" || env == "dev" => false,
            Some(env) if env == "production" || env == "prod" => true,
            // A typo must not start a production service with a generated key and the
            // development defaults.
            Some(other) => {
                bail!("GATEHOUSE_ENV must be production (prod) or development (dev); got {other:?}")
            }
        };
        let data_dir = PathBuf::from(var("DATA_DIR").unwrap_or_else(|| "data".into()));
        let database_url = var("DATABASE_URL").unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("gatehouse.db").display()
            )
        });
        let host = var("HOST").unwrap_or_else(|| "127.0.0.1".into());
        let port: u16 = parsed("PORT", 8000)?;
        let listen: SocketAddr = format!("{host}:{port}")
            .parse()
            .or_else(|_| format!("[{host}]:{port}").parse())
            .with_context(|| format!("HOST={host:?} is not an IP address"))?;
        let public_url = match var("PUBLIC_URL") {
            Some(raw) => public_url(&raw)?,
            None => default_public_url(listen),
        };
        let secret_key = match var("SECRET_KEY") {
            Some(key) => {
                if production && key.len() < 32 {
                    bail!(
                        "SECRET_KEY is {} bytes long; with GATEHOUSE_ENV=production it must be at least 32 bytes (try `openssl rand -hex 32`)",
                        key.len()
                    );
                }
                SecretKey::new(key.into_bytes())
            }
            None if production => bail!(
                "GATEHOUSE_ENV=production needs a SECRET_KEY of at least 32 bytes (try `openssl rand -hex 32`); refusing to start with a generated key"
            ),
            None => load_or_create_secret(&data_dir)?,
        };
        let cors_origins = match var("CORS_ORIGINS") {
            Some(v) => v
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
            None if production => Vec::new(),
            // The tutorial backend's own list, so its Next.js pages on a developer's machine
            // call the API unchanged.
            None => DEV_CORS_ORIGINS.iter().map(|o| o.to_string()).collect(),
        };
        let defaults = HashParams::default();
        let memory_kib = parsed("ARGON2_MEMORY_KIB", defaults.memory_kib)?;
        // Every hash made with more would be refused at its next login.
        if memory_kib > MAX_STORED_MEMORY_KIB {
            bail!(
                "ARGON2_MEMORY_KIB={memory_kib} is more than the {MAX_STORED_MEMORY_KIB} KiB (1 GiB) a stored hash may ask for"
            );
        }
        let hash_params = HashParams {
            memory_kib,
            iterations: parsed("ARGON2_ITERATIONS", defaults.iterations)?,
            parallelism: parsed("ARGON2_PARALLELISM", defaults.parallelism)?,
        };
        Ok(Self {
            database_url,
            listen,
            public_url,
            data_dir,
            secret_key,
            access_token_ttl: lifetime("ACCESS_TOKEN_EXPIRE_MINUTES", 60, 30)?,
            sessions: SessionLifetimes::from_env()?,
            cors_origins,
            hash_params,
            db_acquire_timeout: acquire_timeout()?,
            session_cache_entries: parsed("SESSION_CACHE_ENTRIES", 10_000)?,
            db_min_connections: min_connections()?,
            production,
            jwt: JwtConfig::from_env()?,
            abuse: AbuseProtection::from_env()?,
            mail: MailConfig::from_env()?,
            housekeeping: Housekeeping::from_env()?,
        })
    }

    /// Whether cookies must be `Secure` (and may use the `__Host-` prefix).
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}

/// `PUBLIC_URL`: http or https, at the root. Every route is served from `/`, so a path would
/// only make emailed links and cookies point where nothing answers.
fn public_url(raw: &str) -> anyhow::Result<url::Url> {
    let url = url::Url::parse(raw).with_context(|| format!("PUBLIC_URL={raw:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("PUBLIC_URL={raw:?} must start with https:// (or http:// on a developer's machine)");
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        bail!(
            "PUBLIC_URL={raw:?} must be the service's root, with no path: Gatehouse serves its routes from /"
        );
    }
    Ok(url)
}

/// `DATABASE_ACQUIRE_TIMEOUT_SECONDS`: 1 to 300. Zero would answer 503 whenever every
/// connection is busy for an instant; a huge value overflows the pool's deadline.
fn acquire_timeout() -> anyhow::Result<Duration> {
    let seconds: u64 = parsed("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 5)?;
    if !(1..=300).contains(&seconds) {
        bail!("DATABASE_ACQUIRE_TIMEOUT_SECONDS must be from 1 to 300 (got {seconds})");
    }
    Ok(Duration::from_secs(seconds))
}

/// `http://127.0.0.1:8000/` for the default listener; an unspecified host becomes localhost.
pub fn default_public_url(listen: SocketAddr) -> url::Url {
    let host = if listen.ip().is_unspecified() {
        "localhost".to_string()
    } else {
        match listen.ip() {
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    };
    url::Url::parse(&format!("http://{host}:{}/", listen.port())).expect("a valid URL")
}

const SECRET_FILE: &str = "secret_key";

/// Without `SECRET_KEY`, development uses a random 256-bit key kept in the data folder, so
/// tokens survive restarts but no secret ever ships in the code.
fn load_or_create_secret(data_dir: &Path) -> anyhow::Result<SecretKey> {
    let path = data_dir.join(SECRET_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let bytes = hex::decode(existing.trim())
            .with_context(|| format!("{} is not a hex key", path.display()))?;
        if bytes.len() < 32 {
            bail!("{} holds a key shorter than 256 bits", path.display());
        }
        tracing::warn!(path = %path.display(), "SECRET_KEY is not set; using the key generated earlier in the data folder");
        return Ok(SecretKey::new(bytes));
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating the data folder {}", data_dir.display()))?;
    let mut bytes = vec![0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    write_private_file(&path, hex::encode(&bytes).as_bytes())?;
    tracing::warn!(path = %path.display(), "SECRET_KEY is not set; generated a random key and stored it in the data folder (set SECRET_KEY in production)");
    Ok(SecretKey::new(bytes))
}

fn write_private_file(path: &Path, contents: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secret_is_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(dir.path()).unwrap();
        let second = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(first.expose(), second.expose());
        assert_eq!(first.expose().len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(SECRET_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn rate_limits_and_networks_parse() {
        assert_eq!(
            RateLimit::parse("10/minute").unwrap(),
            RateLimit::per_minute(10)
        );
        assert_eq!(RateLimit::parse(" 5 / h").unwrap(), RateLimit::per_hour(5));
        assert!(RateLimit::parse("0/minute").is_err());
        assert!(RateLimit::parse("ten").is_err());
        assert!(parse_network("10.0.0.0/8").is_ok());
        assert!(parse_network("::1").is_ok());
        assert!(parse_network("proxy.local").is_err());
    }

    #[test]
    fn secret_debug_is_redacted() {
        let key = SecretKey::new(b"super-secret-value".to_vec());
        assert!(!format!("{key:?}").contains("super"));
    }
}
