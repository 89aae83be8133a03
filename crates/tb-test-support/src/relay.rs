//! A TCP relay that can be cut: stands between the daemon and a real
//! service (PostgreSQL) so a test can make that service "restart" — every
//! open connection dies and new ones fail — without touching the shared
//! server other tests use. [`TcpRelay::cut`] closes new connections as
//! soon as they are accepted; [`TcpRelay::refuse`] closes the port, so
//! they are refused as while a real server restarts (a connection pool
//! treats the two differently: it retries a refused connect).

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Relays loopback connections to `target` until [`TcpRelay::cut`].
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// use tb_test_support::relay::TcpRelay;
/// let relay = TcpRelay::start("127.0.0.1:5432".parse().unwrap()).await?;
/// // point the client at relay.addr() …
/// relay.cut(); // the "server" went away: connections die, new ones close
/// relay.restore(); // it is back
/// relay.refuse(); // restarting: connections die, the port is closed
/// relay.restore(); // listening again, on the same port
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct TcpRelay {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; `None` while [`TcpRelay::refuse`] keeps the port
    /// closed.
    accept: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    down: AtomicBool,
    /// Bumped by every cut: pipes of an older generation end.
    generation: watch::Sender<u64>,
    relayed: AtomicU64,
}

impl TcpRelay {
    /// Listens on an ephemeral loopback port and relays to `target`.
    pub async fn start(target: SocketAddr) -> io::Result<TcpRelay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            down: AtomicBool::new(false),
            generation: watch::Sender::new(0),
            relayed: AtomicU64::new(0),
        });
        let accept = tokio::spawn(accept_loop(listener, target, Arc::clone(&shared)));
        Ok(TcpRelay {
            addr,
            target,
            shared,
            accept: Mutex::new(Some(accept)),
        })
    }

    fn accept(&self) -> std::sync::MutexGuard<'_, Option<JoinHandle<()>>> {
        self.accept.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every relayed connection and closes new ones at once, until
    /// [`TcpRelay::restore`].
    pub fn cut(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Drops every relayed connection and closes the port: new
    /// connections are refused until [`TcpRelay::restore`] listens again.
    pub fn refuse(&self) {
        if let Some(accept) = self.accept().take() {
            accept.abort();
        }
        self.shared.generation.send_modify(|g| *g += 1);
    }

    /// Relays new connections again (on the same port after
    /// [`TcpRelay::refuse`]).
    ///
    /// # Panics
    ///
    /// When the port cannot be listened on again (another process took it
    /// meanwhile): the test cannot go on.
    pub fn restore(&self) {
        self.shared.down.store(false, Ordering::SeqCst);
        let mut accept = self.accept();
        if accept.is_none() {
            let listener = listen_again(self.addr)
                .unwrap_or_else(|e| panic!("the relay cannot listen on {} again: {e}", self.addr));
            *accept = Some(tokio::spawn(accept_loop(
                listener,
                self.target,
                Arc::clone(&self.shared),
            )));
        }
    }

    /// Connections relayed so far.
    pub fn relayed(&self) -> u64 {
        self.shared.relayed.load(Ordering::SeqCst)
    }
}

impl Drop for TcpRelay {
    fn drop(&mut self) {
        if let Some(accept) = self.accept().take() {
            accept.abort();
        }
        self.shared.generation.send_modify(|g| *g += 1);
    }
}

fn listen_again(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        if shared.down.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let mut cut = shared.generation.subscribe();
        cut.mark_unchanged();
        shared.relayed.fetch_add(1, Ordering::SeqCst);
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(target).await else {
                return;
            };
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = cut.changed() => {}
            }
        });
    }
}
