//! A real SMTP server on a local port, collecting what the service sends.

use std::io;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mailin_embedded::{Handler, Response, Server, SslConfig, response};

/// One received message.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: Vec<String>,
    pub raw: String,
}

impl Received {
    /// The message with quoted-printable soft breaks and `=3D` undone, enough to read links.
    pub fn decoded(&self) -> String {
        self.raw.replace("=\r\n", "").replace("=3D", "=")
    }

    pub fn subject(&self) -> String {
        self.raw
            .lines()
            .find_map(|l| l.strip_prefix("Subject: "))
            .unwrap_or_default()
            .to_string()
    }

    /// The first link to `path` in the message.
    pub fn link(&self, path: &str) -> String {
        let text = self.decoded();
        let start = text
            .find(&format!("{path}?token="))
            .expect("the message has the link");
        let begin = text[..start].rfind("http").expect("an absolute link");
        text[begin..]
            .split(|c: char| c.is_whitespace() || c == '"' || c == '<')
            .next()
            .unwrap()
            .to_string()
    }

    pub fn token(&self, path: &str) -> String {
        let link = self.link(path);
        link.split("token=").nth(1).unwrap().to_string()
    }
}

#[derive(Clone)]
struct Collector {
    inbox: Arc<Mutex<Vec<Received>>>,
    to: Vec<String>,
    data: Vec<u8>,
    /// How long the server takes to accept each message's sender (`SmtpSink::slow`).
    delay: Duration,
}

impl Handler for Collector {
    fn mail(&mut self, _ip: IpAddr, _domain: &str, _from: &str) -> Response {
        std::thread::sleep(self.delay);
        response::OK
    }

    fn data_start(&mut self, _domain: &str, _from: &str, _is8bit: bool, to: &[String]) -> Response {
        self.to = to.to_vec();
        self.data.clear();
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let raw = String::from_utf8_lossy(&self.data).into_owned();
        self.inbox.lock().unwrap().push(Received {
            to: self.to.clone(),
            raw,
        });
        response::OK
    }
}

/// An SMTP server (mailin) on a free port of 127.0.0.1, for the life of the test process.
pub struct SmtpSink {
    pub url: String,
    inbox: Arc<Mutex<Vec<Received>>>,
}

impl SmtpSink {
    pub fn start() -> Self {
        Self::slow(Duration::ZERO)
    }

    /// A server that takes `delay` to accept each message's sender, so that a send is still
    /// in flight a while after it starts.
    pub fn slow(delay: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let inbox = Arc::new(Mutex::new(Vec::new()));
        let collector = Collector {
            inbox: inbox.clone(),
            to: Vec::new(),
            data: Vec::new(),
            delay,
        };
        let mut server = Server::new(collector);
        server
            .with_name("localhost")
            .with_ssl(SslConfig::None)
            .unwrap()
            .with_tcp_listener(listener);
        std::thread::spawn(move || {
            let _ = server.serve();
        });
        Self {
            url: format!("smtp://127.0.0.1:{port}"),
            inbox,
        }
    }

    /// Waits (bounded) for a message to `to` whose subject contains `subject`, and takes it.
    pub async fn expect(&self, to: &str, subject: &str) -> Received {
        for _ in 0..100 {
            {
                let mut inbox = self.inbox.lock().unwrap();
                let wanted = |m: &Received| {
                    m.to.iter().any(|t| t.contains(to)) && m.subject().contains(subject)
                };
                if let Some(i) = inbox.iter().position(wanted) {
                    return inbox.remove(i);
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("no message to {to} about {subject:?}");
    }

    /// How many messages have arrived for `to` (not yet taken).
    pub fn count_for(&self, to: &str) -> usize {
        self.inbox
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.to.iter().any(|t| t.contains(to)))
            .count()
    }
}
