//! Building and running the daemon: `App::build` prepares everything and binds the
//! listener (port 0 works in tests); `run_until_stopped` serves until shutdown.

use std::future::Future;
use std::io::IsTerminal;
use std::net::SocketAddr;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::config::Settings;
use crate::db::Db;
use crate::executor::Executor;
use crate::server::{self, AppState, auth};

/// A ready-to-run forgehand: database migrated, admin token loaded, listener bound.
pub struct App {
    listener: TcpListener,
    state: AppState,
}

impl App {
    /// Creates `data_dir`, opens and migrates the database, loads or generates the admin
    /// token, and binds `server.listen`.
    pub async fn build(settings: Settings) -> anyhow::Result<App> {
        std::fs::create_dir_all(&settings.data_dir)
            .with_context(|| format!("cannot create data_dir {}", settings.data_dir.display()))?;
        let db = open_database(&settings).await?;
        let (admin_token, source) = auth::load_or_generate(&settings.auth.admin_token, &settings.data_dir)
            .with_context(|| format!("cannot store the admin token in {}", settings.data_dir.display()))?;
        let listener = TcpListener::bind(settings.server.listen).await.with_context(|| {
            format!(
                "cannot listen on {} (server.listen); is another process using it?",
                settings.server.listen
            )
        })?;
        let app = App { listener, state: AppState::new(settings, db, admin_token) };
        app.announce(&source);
        Ok(app)
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
        let executor = self.start_executor(stop_rx)?;
        let router = server::router(self.state.clone());
        // The client address feeds the login rate limit.
        let router = router.into_make_service_with_connect_info::<SocketAddr>();
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            })
            .await;
        if let Some(executor) = executor {
            let _ = executor.await;
        }
        served?;
        tracing::info!("forgehand stopped");
        Ok(())
    }

    fn start_executor(
        &self,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
        let settings = &self.state.settings;
        if !settings.executor.enabled {
            tracing::info!("executor disabled (executor.enabled = false): tasks wait for another instance");
            return Ok(None);
        }
        let executor = Executor::new(settings.clone(), self.state.db.clone(), self.state.wake.clone())?;
        Ok(Some(tokio::spawn(executor.run(stop))))
    }

    fn announce(&self, source: &auth::TokenSource) {
        let addr = self.local_addr();
        if let auth::TokenSource::Generated(path, token) = source {
            // Shown once, and only on a terminal: under systemd stdout is the journal.
            if !std::io::stdout().is_terminal() {
                tracing::info!(
                    "generated an admin token and stored it in {} (mode 0600); read it there",
                    path.display()
                );
                return self.announce_listening();
            }
            println!(
                "\nforgehand generated an admin token and stored it in {} (mode 0600):\n\n    {}\n\n\
                 Log in with it at http://{addr}/login, or send it as `Authorization: Bearer <token>`\n\
                 to http://{addr}/api/tasks.\n",
                path.display(),
                token.expose_secret(),
            );
        }
        self.announce_listening();
    }

    fn announce_listening(&self) {
        let settings = &self.state.settings;
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
                "no forge configured: add a [[forges]] entry to your config file (see README.md), then restart"
            );
        }
    }
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
