//! A TCP relay to the test database server that can go down as a server does (refusing new
//! connections and cutting the open ones, then coming back on the same port), and can keep a
//! copy of what each connection sends the server, which `FrontendMessages` reads.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one connection sent the server.
type Sent = Arc<Mutex<Vec<u8>>>;

/// Listens on a port of its own and relays each connection to the test database server.
pub struct Relay {
    /// The port it listens on, on 127.0.0.1; the same after a restart.
    pub port: u16,
    upstream: String,
    /// What each connection sent the server, in the order they connected; `None` when not kept.
    sent: Option<Arc<Mutex<Vec<Sent>>>>,
    running: tokio::sync::Mutex<Option<Running>>,
}

/// The relay's task while it serves, and how to tell it to stop.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    /// A relay to the server of `TEST_DATABASE_URL` (which callers check is set), keeping what
    /// is sent if `keep_sent`; `None` (with a message) when that server is reached through a
    /// Unix socket, which has no TCP port to stand in for.
    pub async fn to_test_database(keep_sent: bool) -> Option<Self> {
        let url = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL is set");
        let upstream = url::Url::parse(&url).expect("TEST_DATABASE_URL is a URL");
        let (Some(host), false) = (
            upstream.host_str().filter(|host| !host.is_empty()),
            upstream.query_pairs().any(|(key, _)| key == "host"),
        ) else {
            eprintln!("skipping: the test database is reached through a Unix socket, not TCP");
            return None;
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = Self {
            port: listener.local_addr().unwrap().port(),
            upstream: format!("{host}:{}", upstream.port().unwrap_or(5432)),
            sent: keep_sent.then(Default::default),
            running: tokio::sync::Mutex::new(None),
        };
        relay.serve(listener).await;
        Some(relay)
    }

    /// `database_url` with the relay in place of the server.
    pub fn url_for(&self, database_url: &str) -> String {
        let mut url = url::Url::parse(database_url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.into()
    }

    /// A copy of what each connection has sent the server so far.
    pub fn sent(&self) -> Vec<Vec<u8>> {
        let connections = self.sent.as_ref().expect("a relay that keeps what is sent");
        let connections = connections.lock().unwrap();
        connections
            .iter()
            .map(|sent| sent.lock().unwrap().clone())
            .collect()
    }

    async fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let sent = self.sent.clone();
        let (stop, mut stopping) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = &mut stopping => break,
                };
                let Ok((client, _)) = accepted else {
                    continue;
                };
                let copy = sent.as_ref().map(|sent| {
                    let copy = Arc::new(Mutex::new(Vec::new()));
                    sent.lock().unwrap().push(copy.clone());
                    copy
                });
                let upstream = upstream.clone();
                connections.spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        relay(client, server, copy).await;
                    }
                });
                while connections.try_join_next().is_some() {}
            }
            drop(listener);
            // Aborts every connection's task and waits until each has closed both its ends.
            connections.shutdown().await;
        });
        *self.running.lock().await = Some(Running { stop, task });
    }

    /// Closes the listening socket, so connections are refused, and cuts the open ones; returns
    /// once all of that is done.
    pub async fn stop(&self) {
        if let Some(Running { stop, task }) = self.running.lock().await.take() {
            let _ = stop.send(());
            task.await.unwrap();
        }
    }

    /// Listens again on the same port, as a server back from a restart.
    pub async fn restart(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .unwrap_or_else(|e| panic!("port {} is taken after the relay stopped: {e}", self.port));
        self.serve(listener).await;
    }
}

/// Copies each way until either side closes, keeping a copy of what the client sends in `copy`.
async fn relay(client: TcpStream, server: TcpStream, copy: Option<Sent>) {
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let upstream = async {
        let mut buffer = vec![0; 16 * 1024];
        loop {
            let read = match from_client.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if let Some(copy) = &copy {
                copy.lock().unwrap().extend_from_slice(&buffer[..read]);
            }
            if to_server.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
    };
    let downstream = tokio::io::copy(&mut from_server, &mut to_client);
    // Either side closing ends both, as a server's end would.
    tokio::select! {
        () = upstream => {}
        _ = downstream => {}
    }
}

/// Counts of what clients sent a PostgreSQL server (the frontend messages of its protocol), on
/// the connections of one application (`application_name`).
#[derive(Debug, Default, PartialEq)]
pub struct FrontendMessages {
    /// Statements run: `Execute` in the extended protocol, `Query` in the simple one.
    pub statements: usize,
    /// `Sync` messages that close no statement: round trips that check a connection.
    pub checks: usize,
}

impl FrontendMessages {
    /// Reads the bytes of each connection (as `Relay::sent` gives them) that named itself
    /// `application_name` in its startup message: a length, the protocol version and pairs of
    /// names and values ending in `\0`; then messages of a type byte and a length that counts
    /// itself. A message cut off at the end is left for the next reading. Connections must not
    /// ask for TLS (`sslmode=disable`), which would make the rest unreadable.
    pub fn of(application_name: &str, connections: &[Vec<u8>]) -> Self {
        let mut counts = Self::default();
        for bytes in connections {
            let length_at = |at: usize| -> Option<usize> {
                let field = bytes.get(at..at + 4)?;
                Some(u32::from_be_bytes(field.try_into().unwrap()) as usize)
            };
            let Some(startup) = length_at(0).and_then(|length| bytes.get(8..length)) else {
                continue;
            };
            let mut parameters = startup.split(|&byte| byte == 0);
            let named = std::iter::from_fn(|| Some((parameters.next()?, parameters.next()?))).any(
                |(name, value)| name == b"application_name" && value == application_name.as_bytes(),
            );
            if !named {
                continue;
            }
            let mut at = startup.len() + 8;
            let mut previous = None;
            while let Some(length) = length_at(at + 1) {
                let end = at + 1 + length;
                if end > bytes.len() {
                    break;
                }
                let kind = bytes[at];
                match kind {
                    b'E' | b'Q' => counts.statements += 1,
                    // Parse, Bind, Describe, Execute and Close come before the `Sync` that
                    // ends their batch.
                    b'S' if !matches!(previous, Some(b'P' | b'B' | b'D' | b'E' | b'C')) => {
                        counts.checks += 1;
                    }
                    _ => {}
                }
                previous = Some(kind);
                at = end;
            }
        }
        counts
    }
}

#[test]
fn frontend_messages_are_counted_on_the_named_connections_only() {
    fn startup(application_name: &str) -> Vec<u8> {
        let mut body = 196_608_u32.to_be_bytes().to_vec(); // protocol 3.0
        for part in ["user", "postgres", "application_name", application_name, ""] {
            body.extend_from_slice(part.as_bytes());
            body.push(0);
        }
        let mut message = u32::try_from(body.len() + 4)
            .unwrap()
            .to_be_bytes()
            .to_vec();
        message.extend(body);
        message
    }
    fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut message = vec![kind];
        message.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        message.extend_from_slice(body);
        message
    }
    let statement: Vec<u8> = [b'P', b'B', b'D', b'E', b'S']
        .into_iter()
        .flat_map(|kind| message(kind, b"x\0"))
        .collect();
    let check = message(b'S', b"");
    let simple = message(b'Q', b"SELECT 1\0");
    let cut_off = &message(b'E', b"portal\0")[..5];

    let login = [
        startup("gatehouse-login"),
        statement.clone(),
        check.clone(),
        simple,
        check.clone(),
        cut_off.to_vec(),
    ]
    .concat();
    let other = [startup("gatehouse"), statement, check].concat();
    let connections = [login, other, b"\0\0".to_vec()];

    assert_eq!(
        FrontendMessages::of("gatehouse-login", &connections),
        FrontendMessages {
            statements: 2,
            checks: 2,
        }
    );
    assert_eq!(
        FrontendMessages::of("gatehouse", &connections),
        FrontendMessages {
            statements: 1,
            checks: 1,
        }
    );
    assert_eq!(
        FrontendMessages::of("shop", &connections),
        FrontendMessages::default()
    );
}
