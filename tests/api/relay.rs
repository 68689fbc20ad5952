//! A TCP relay to the test database server that can go down as a server does (refusing new
//! connections and cutting the open ones, then coming back on the same port), and can keep a
//! copy of what each connection sends the server.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one connection sent the server.
type Sent = Arc<Mutex<Vec<u8>>>;

pub struct Relay {
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
    /// A relay to the server of `TEST_DATABASE_URL`, keeping what is sent if `keep_sent`; `None`
    /// (with a message) when that server is reached through a Unix socket, which has no TCP
    /// port to stand in for.
    pub async fn to_test_database(keep_sent: bool) -> Option<Self> {
        let upstream = url::Url::parse(&std::env::var("TEST_DATABASE_URL").ok()?).ok()?;
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
