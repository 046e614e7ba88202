//! Building and running the daemon: `App::build` prepares everything and binds the
//! listener (port 0 works in tests); `run_until_stopped` serves until shutdown.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::{ServerSettings, Settings};
use crate::db::Db;
use crate::executor::Executor;
use crate::server::{self, AppState, auth};

/// A ready-to-run forgehand: database migrated, admin token loaded, listener bound.
pub struct App {
    listener: TcpListener,
    state: AppState,
    release_start_up_pages: bool,
}

impl App {
    /// Creates `data_dir`, opens and migrates the database, loads or generates the admin
    /// token, and binds `server.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        create_data_dir(&settings.data_dir)?;
        let db = open_database(&settings).await?;
        let (admin_token, source) = auth::load_or_generate(&settings.auth.admin_token, &settings.data_dir)
            .with_context(|| format!("cannot store the admin token in {}", settings.data_dir.display()))?;
        let listener = TcpListener::bind(settings.server.listen).await.with_context(|| {
            format!(
                "cannot listen on {} (server.listen); is another process using it?",
                settings.server.listen
            )
        })?;
        let app =
            App { listener, state: AppState::new(settings, db, admin_token), release_start_up_pages: false };
        let _ = app.state.local_addr.set(app.local_addr());
        app.announce(&source);
        Ok(app)
    }

    /// Once everything has started, releases the pages of code that only start-up ran
    /// (`footprint`). For the daemon's own process: a test binary would release its own.
    pub fn releasing_start_up_pages(mut self) -> App {
        self.release_start_up_pages = true;
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// The shared state, for tests and tools that run beside the server.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves and runs tasks until `shutdown` completes, then finishes the requests in
    /// flight and gives running tasks their grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let executor = self.start_executor(stop_rx.clone())?;
        let cleanup = tokio::spawn(crate::executor::cleanup::run(
            self.state.db.clone(),
            self.state.watch_settings(),
            self.state.cleanup.clone(),
            stop_rx.clone(),
        ));
        let notifier =
            tokio::spawn(crate::executor::notify::run(self.state.settings(), self.state.db.clone(), stop_rx));
        let identities = server::identity::follow(&self.state);
        let router = server::router(self.state.clone());
        let limits = ConnectionLimits::from(&self.state.settings().server);
        if self.release_start_up_pages {
            let kib = crate::footprint::release_start_up_pages();
            tracing::info!(released_kib = kib, "start-up code released from memory");
        }
        let served = serve(self.listener, router, limits, async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        })
        .await;
        identities.abort();
        if let Some(executor) = executor {
            let _ = executor.await;
        }
        let _ = notifier.await;
        let _ = cleanup.await;
        served?;
        tracing::info!("forgehand stopped");
        Ok(())
    }

    fn start_executor(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        let settings = self.state.settings();
        if !settings.executor.enabled {
            tracing::info!("executor disabled (executor.enabled = false): tasks wait for another instance");
            return Ok(None);
        }
        let executor = Executor::new((*settings).clone(), self.state.db.clone(), self.state.wake.clone())?
            .follow_settings(self.state.watch_settings());
        Ok(Some(tokio::spawn(executor.run(stop))))
    }

    fn announce(&self, source: &auth::TokenSource) {
        let base = self.base_url();
        match source {
            // Shown once, and only on a terminal: under systemd stdout is the journal.
            auth::TokenSource::Generated(path, token) if std::io::stdout().is_terminal() => println!(
                "\nforgehand generated an admin token and stored it in {} (mode 0600):\n\n    {}\n\n\
                 Log in with it at {base}/login, or send it as `Authorization: Bearer <token>`\n\
                 to {base}/api/tasks.\n",
                path.display(),
                token.expose_secret(),
            ),
            auth::TokenSource::Generated(path, _) => tracing::info!(
                "generated an admin token and stored it in {} (mode 0600); read it there and log in at {base}/login",
                path.display()
            ),
            auth::TokenSource::Stored(path) => {
                tracing::info!("the admin token is in {}; log in with it at {base}/login", path.display())
            }
            auth::TokenSource::Configured => tracing::info!(
                "the admin token is auth.admin_token of the configuration; log in with it at {base}/login"
            ),
        }
        self.announce_listening();
    }

    /// Where people on this machine reach the server: the listening address, or
    /// `server.public_url` when it listens on every interface.
    fn base_url(&self) -> String {
        let addr = self.local_addr();
        if addr.ip().is_unspecified() {
            self.state.settings().server.public_url.trim_end_matches('/').to_owned()
        } else {
            format!("http://{addr}")
        }
    }

    fn announce_listening(&self) {
        let settings = self.state.settings();
        let addr = self.local_addr();
        tracing::info!(%addr, public_url = %settings.server.public_url, data_dir = %settings.data_dir.display(), "forgehand listening");
        for forge in &settings.forges {
            if forge.webhook_secret.is_empty() {
                tracing::warn!(forge = %forge.name, "forge has no webhook_secret: every delivery to /webhooks/{} is refused", forge.name);
            } else {
                tracing::info!(forge = %forge.name, kind = %forge.kind, "webhooks accepted at {}/webhooks/{}", settings.server.public_url, forge.name);
            }
        }
        if settings.forges.is_empty() {
            tracing::warn!(
                "no forge configured: open {}/setup/wizard to add one (applied without a restart), \
                 or add a [[forges]] entry to the config file (see docs/configuration.md)",
                settings.server.public_url
            );
        }
    }
}

/// The limits every connection is served under (`[server]`).
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    header_timeout: Duration,
    max_connections: usize,
}

impl From<&ServerSettings> for ConnectionLimits {
    fn from(server: &ServerSettings) -> Self {
        ConnectionLimits {
            header_timeout: Duration::from_secs(server.header_timeout_secs),
            max_connections: server.max_connections,
        }
    }
}

/// Accepts connections until `shutdown` completes, then stops accepting, lets the requests
/// in flight finish and closes idle connections.
///
/// At most `max_connections` are served at once: over the limit the loop stops accepting,
/// so new connections wait in the kernel's listen backlog (rather than being refused) until
/// one closes. Clients that are slow to send their headers are cut off after
/// `header_timeout`, which also bounds how long an idle connection holds its slot.
async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the connection semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // The client address feeds the login rate limit (axum's ConnectInfo).
        let service =
            TowerToHyperService::new(router.clone().layer(axum::Extension(axum::extract::ConnectInfo(peer))));
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// A failed accept: a connection reset before it was accepted is the client's business;
/// anything else (out of file descriptors) is logged and retried after a pause, so the
/// loop does not spin.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(err.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %err, "cannot accept a connection; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Makes every file and directory this process creates from now on private to its user
/// (0600 / 0700) whatever the umask it was started with: the database and its WAL,
/// transcripts, checkouts and the admin token live in `data_dir`. Called first thing by
/// the `forgehand` binary; the process's children (git, the agent) inherit it.
pub fn keep_new_files_private() {
    // SAFETY: umask only sets the process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(0o077) };
}

/// Creates `data_dir` (and missing parents) with mode 0700; an existing one is left as
/// it is.
pub fn create_data_dir(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create data_dir {}", data_dir.display()))
}

/// Opens the configured database and applies pending migrations.
pub async fn open_database(settings: &Settings) -> anyhow::Result<Db> {
    let db = Db::connect(settings).await.context("cannot open the database (database.url)")?;
    db.migrate().await.context("cannot apply database migrations")?;
    Ok(db)
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops forgehand");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested");
}
