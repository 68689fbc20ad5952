//! A login flood on many connections at once (scenario 4). Each connection sends
//! `POST /token` as user `bench{n}` again and again on keep-alive until the time is up, and
//! always waits for the answer to the request it sent; statuses and failures are counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::env;

/// Longest wait for one answer before it counts as unanswered.
const ANSWER_LIMIT: Duration = Duration::from_secs(180);

#[derive(Default)]
struct Tally {
    statuses: Mutex<BTreeMap<u16, u64>>,
    failures: Mutex<BTreeMap<String, u64>>,
    max_latency_ms: AtomicU64,
}

impl Tally {
    fn fail(&self, what: impl Into<String>) {
        *self
            .failures
            .lock()
            .unwrap()
            .entry(what.into())
            .or_default() += 1;
    }
}

pub async fn run(connections: usize, seconds: u64, users: u64) -> anyhow::Result<()> {
    let addr = env("BENCH_ADDR")?;
    let password = env("BENCH_PASSWORD")?;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..connections {
        let (addr, password, tally) = (addr.clone(), password.clone(), tally.clone());
        let user = 1 + (i as u64 * 7919) % users.max(1);
        tasks.push(tokio::spawn(async move {
            if let Err(e) = connection(&addr, user, &password, deadline, &tally).await {
                tally.fail(e);
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let statuses = tally.statuses.lock().unwrap();
    let failures = tally.failures.lock().unwrap();
    let answered: u64 = statuses.values().sum();
    println!(
        "connections={connections} answered={answered} statuses={statuses:?} failures={failures:?} \
         max_latency_ms={} elapsed_s={:.1}",
        tally.max_latency_ms.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn connection(
    addr: &str,
    user: u64,
    password: &str,
    deadline: Instant,
    tally: &Tally,
) -> Result<(), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut stream = BufReader::new(stream);
    let body = format!("username=bench{user}&password={password}");
    let request = format!(
        "POST /token HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    while Instant::now() < deadline {
        let sent = Instant::now();
        stream
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        let (status, close) = tokio::time::timeout(ANSWER_LIMIT, read_response(&mut stream))
            .await
            .map_err(|_| "unanswered".to_string())??;
        let ms = sent.elapsed().as_millis() as u64;
        tally.max_latency_ms.fetch_max(ms, Ordering::Relaxed);
        *tally.statuses.lock().unwrap().entry(status).or_default() += 1;
        if close {
            return Ok(());
        }
    }
    Ok(())
}

/// Reads one response; returns its status and whether the server closes the connection.
async fn read_response(stream: &mut BufReader<TcpStream>) -> Result<(u16, bool), String> {
    let mut line = String::new();
    let mut status = None;
    let (mut length, mut close) = (0usize, false);
    loop {
        line.clear();
        let n = stream
            .read_line(&mut line)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the answer".into());
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if status.is_none() {
            status = trimmed.split(' ').nth(1).and_then(|s| s.parse().ok());
            continue;
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if lower.starts_with("connection:") && lower.contains("close") {
            close = true;
        }
    }
    let mut body = vec![0; length];
    stream
        .read_exact(&mut body)
        .await
        .map_err(|e| format!("read body: {e}"))?;
    Ok((status.ok_or("no status line")?, close))
}
