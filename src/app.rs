//! Wiring: builds the live state and serves the data and admin planes with
//! graceful shutdown. No business logic lives here.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use sha2::Digest;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

mod conn;

use crate::config::Config;
use crate::provider::EnvLookup;
use crate::state::{Live, LoadError};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Watch(#[from] crate::reload::WatchError),
    #[error(transparent)]
    Fleet(#[from] crate::fleet::FleetError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// How long shutdown waits for requests in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// What `start` needs besides the table.
pub struct Options {
    pub path: Option<PathBuf>,
    pub env: EnvLookup,
    pub listen: SocketAddr,
    pub admin_listen: SocketAddr,
    pub admin_token: String,
}

/// A running gateway: its addresses, its state, and a handle to stop it.
pub struct Gateway {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub live: Arc<Live>,
    /// This replica's link to the fleet; `None` outside fleet mode.
    pub fleet: Option<Arc<crate::fleet::Fleet>>,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    _watch: Option<crate::reload::Watch>,
}

impl Gateway {
    /// Stops accepting, lets requests in flight finish, then returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

pub async fn start(config: Config, opts: Options) -> Result<Gateway, StartError> {
    let redis_url = crate::fleet::redis_url(&config.fleet, &opts.env);
    let fleet_config = config.fleet.clone();
    let live = Arc::new(Live::new(config, opts.path.clone(), opts.env)?);
    let _ = live
        .admin_token_digest
        .set(sha2::Sha256::digest(opts.admin_token.as_bytes()).into());
    // The detector's thread audits its flags; it holds no strong reference,
    // so a dropped gateway ends it.
    let weak = Arc::downgrade(&live);
    live.abuse.start(move |report| {
        if let Some(live) = weak.upgrade() {
            live.abuse_flagged(report);
        }
    });
    let watch = match &opts.path {
        Some(p) => Some(crate::reload::watch(live.clone(), p)?),
        None => None,
    };
    let data = bind(opts.listen).await?;
    let admin = bind(opts.admin_listen).await?;
    let (stop, stopped) = watch::channel(false);
    let limits = Limits::from(&live.load().config.gateway);
    let addr = data.local_addr().map_err(|source| StartError::Bind {
        addr: opts.listen,
        source,
    })?;
    let admin_addr = admin.local_addr().map_err(|source| StartError::Bind {
        addr: opts.admin_listen,
        source,
    })?;
    let responses = live.load().config.responses.clone();
    let turns: Arc<dyn crate::conversation::TurnStore> = match &redis_url {
        Some(url) => Arc::new(
            crate::fleet::turns::SharedTurns::new(
                url,
                &fleet_config.name,
                responses.store_ttl,
                responses.store_max_bytes,
            )
            .map_err(crate::fleet::FleetError::from)?,
        ),
        None => Arc::new(crate::conversation::MemoryStore::new(
            responses.store_ttl,
            responses.store_max_bytes,
        )),
    };
    let (fleet, fleet_tasks) = match redis_url {
        Some(url) => {
            let addresses = crate::fleet::Addresses {
                data: addr,
                admin: admin_addr,
            };
            let (fleet, tasks) = crate::fleet::Fleet::start(
                live.clone(),
                &fleet_config,
                &url,
                addresses,
                stopped.clone(),
            )?;
            (Some(fleet), tasks)
        }
        None => (None, Vec::new()),
    };
    let mut tasks = vec![
        tokio::spawn(serve(
            data,
            crate::http::router(live.clone(), limits.max_concurrent, turns),
            limits,
            "data",
            wait(stopped.clone()),
        )),
        tokio::spawn(serve(
            admin,
            crate::admin::router(live.clone(), &opts.admin_token, fleet.clone()),
            limits,
            "admin",
            wait(stopped.clone()),
        )),
        tokio::spawn(expire_suspensions(live.clone(), wait(stopped))),
    ];
    tasks.extend(fleet_tasks);
    tracing::info!(%addr, %admin_addr, "gateway listening");
    Ok(Gateway {
        addr,
        admin_addr,
        live,
        fleet,
        stop,
        tasks,
        _watch: watch,
    })
}

/// Lifts suspensions whose TTL ran out, once a second, until shutdown;
/// folds histogram samples into buckets (so memory stays flat between
/// scrapes); with OTLP metric export on, also sets the gauges read from
/// live state (Prometheus sets them at scrape time).
async fn expire_suspensions(live: Arc<Live>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let gauges = crate::telemetry::otel_metrics_on();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                live.expire_suspensions().await;
                crate::telemetry::upkeep();
                if gauges {
                    live.publish_gauges();
                }
            }
            () = &mut shutdown => break,
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

async fn wait(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

/// Connection-level limits, fixed at start.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_headers: usize,
    pub max_header_bytes: usize,
    pub max_concurrent: usize,
    pub max_connections_per_ip: usize,
}

impl From<&crate::config::GatewayConfig> for Limits {
    fn from(g: &crate::config::GatewayConfig) -> Limits {
        Limits {
            header_read_timeout: g.header_read_timeout,
            max_headers: g.max_headers,
            max_header_bytes: g.max_header_bytes,
            max_concurrent: g.max_concurrent_requests,
            max_connections_per_ip: g.max_connections_per_ip,
        }
    }
}

/// HTTP/2 pings: how often an idle-looking connection is pinged, and how
/// long the peer has to answer before the connection is dropped as dead.
const H2_PING_INTERVAL: Duration = Duration::from_secs(20);
const H2_PING_TIMEOUT: Duration = Duration::from_secs(20);

/// Serves `router` on `listener` with hyper directly, so the header-read
/// timeout has a timer behind it, until `shutdown` resolves; then drains.
/// A connection with no request in progress for `header_read_timeout` is
/// closed, HTTP/1 or HTTP/2 (a peer answering pings is still idle); one
/// address holds at most `max_connections_per_ip` connections.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    name: &'static str,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_PING_INTERVAL)
        .keep_alive_timeout(H2_PING_TIMEOUT)
        .max_header_list_size(limits.max_header_bytes as u32);
    let (stop, stopped) = watch::channel(false);
    // Each connection holds a sender; draining waits until all are gone.
    let (open, mut drained) = tokio::sync::mpsc::channel::<()>(1);
    let per_ip = conn::PerIp::new(limits.max_connections_per_ip);
    let mut backoff = conn::Backoff::default();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                let pause = backoff.failed(&e, name);
                if !pause.is_zero() {
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = &mut shutdown => break,
                    }
                }
                continue;
            }
        };
        backoff.accepted(name);
        // Over the cap: the connection is closed at once.
        let Some(ticket) = per_ip.admit(peer.ip()) else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let task = Connection {
            builder: builder.clone(),
            router: router.clone(),
            idle: limits.header_read_timeout,
            stopped: stopped.clone(),
            _open: open.clone(),
            _ticket: ticket,
        };
        tokio::spawn(task.run(stream));
    }
    drop(listener);
    let _ = stop.send(true);
    drop(open);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drained.recv()).await;
}

/// One accepted connection and what it holds until it closes.
struct Connection {
    builder: auto::Builder<TokioExecutor>,
    router: Router,
    idle: Duration,
    stopped: watch::Receiver<bool>,
    _open: tokio::sync::mpsc::Sender<()>,
    _ticket: conn::Ticket,
}

impl Connection {
    async fn run(mut self, stream: tokio::net::TcpStream) {
        // A connection that never sends a byte is closed when the header
        // timeout runs out, like a slow one.
        let mut probe = [0u8; 1];
        match tokio::time::timeout(self.idle, stream.peek(&mut probe)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return,
        }
        let activity = conn::Activity::new();
        let (router, counted) = (self.router.clone(), activity.clone());
        let peer = stream.peer_addr().ok().map(crate::http::ClientAddr);
        let service =
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                if let Some(p) = peer {
                    req.extensions_mut().insert(p);
                }
                let busy = counted.begin();
                let answer = router.clone().oneshot(req);
                async move {
                    let resp = answer.await?;
                    Ok::<_, std::convert::Infallible>(
                        resp.map(|inner| conn::Tracked { inner, _busy: busy }),
                    )
                }
            });
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let mut closing = false;
        loop {
            tokio::select! {
                _ = conn.as_mut() => break,
                _ = self.stopped.wait_for(|v| *v), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                () = activity.idle_for(self.idle), if !closing => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}
