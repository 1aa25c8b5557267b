//! Building and running the service: [`Application::build`] resolves secrets, opens the store,
//! opens and recovers the spool, starts the batcher, waits until it has replayed every record the
//! store may not have (bounded by [`REPLAY_WAIT`]), then binds the listener;
//! [`Application::run_until_stopped`] serves until the stop token fires, then shuts down in a fixed
//! order within the deadline: stop accepting and finish in-flight requests → close the spool →
//! batcher drains, flushes every pending file and acknowledges → writer thread exits → return.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batcher, BatcherError, BatcherReport};
use crate::config::{SecretSource, ServeSettings, SubscriptionSettings};
use crate::http::tls;
use crate::http::{self, AdminState, WebhookState};
use crate::instance;
use crate::metrics;
use crate::oncehub::WEBHOOK_PATH;
use crate::oncehub::signature::Verifier;
use crate::oncehub::{OnceHubClient, SubscriptionError, SubscriptionWatch, ensure};
use crate::schema::{Catalog, SchemaError};
use crate::secret::{self, SecretFileError, WebhookSecret};
use crate::sink::{StoreError, Uploader, open_store};
use crate::spool::{OpenError, Spool};

/// How long start-up waits for the replay before serving anyway. The replay only stalls when the
/// store is down and the backlog exceeds one file; new deliveries then queue behind it on disk.
const REPLAY_WAIT: Duration = Duration::from_secs(10);

/// The service could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Secret(#[from] SecretFileError),
    #[error(transparent)]
    Spool(#[from] OpenError),
    #[error("cannot keep the instance id: {0}")]
    InstanceId(std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Schema(#[from] SchemaError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
    #[error("pending files could not be written before shutdown: {0}")]
    Batcher(#[from] BatcherError),
    #[error("shutdown deadline of {0:?} passed before every pending file was written")]
    Deadline(Duration),
    #[error("the batcher task panicked: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A built, bound, not yet serving service.
pub struct Application {
    port: u16,
    admin_port: Option<u16>,
    server: actix_web::dev::Server,
    /// The `--admin-listen` server: stopped last, so `/readyz` and `/metrics` answer during the drain.
    admin: Option<(actix_web::dev::ServerHandle, JoinHandle<std::io::Result<()>>)>,
    spool: Spool,
    batcher: JoinHandle<Result<BatcherReport, BatcherError>>,
    abort: CancellationToken,
    shutdown_timeout: Duration,
}

impl Application {
    pub async fn build(settings: ServeSettings) -> Result<Application, StartupError> {
        // Files first: a bad certificate stops the start before anything else happens.
        let tls_config = settings.tls.as_ref().map(tls::server_config).transpose()?;
        let data_dir = settings.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|source| StartupError::DataDir { path: data_dir.clone(), source })?;
        let store = open_store(&settings.storage)?;
        metrics::handle();
        let catalog = Arc::new(Catalog::load()?);

        let writer = instance::load_or_create(&data_dir.join("instance-id")).map_err(StartupError::InstanceId)?;
        let (spool, reader, recovered) = Spool::open(settings.spool.clone())?;
        // After the spool's lock: a second instance on this data dir stops before it touches
        // the subscription or the secret files.
        let (secrets, expiring, subscription) = match &settings.subscription {
            Some(sub) => {
                let (secrets, expiring, watch) = subscribe(&settings, sub).await?;
                (secrets, expiring, Some(watch))
            }
            None => (resolve_secrets(&settings)?, Vec::new(), None),
        };
        let progress = reader.progress();
        let abort = CancellationToken::new();
        let batcher = Batcher::new(
            catalog,
            settings.flush,
            writer,
            Uploader::new(store.clone()),
            spool.clone(),
            (recovered.checkpoint, recovered.intents.clone()),
            abort.clone(),
        );
        let batcher = tokio::spawn(batcher.run(reader));
        let to_replay = recovered.last.0 - recovered.checkpoint.0;
        if to_replay > 0 {
            let started = std::time::Instant::now();
            let done = tokio::time::timeout(REPLAY_WAIT, async {
                while progress.load(std::sync::atomic::Ordering::Acquire) < recovered.last.0 && !batcher.is_finished() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
            .await;
            match done {
                Ok(()) => tracing::info!(
                    records = to_replay,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "replayed the spool into the batcher"
                ),
                Err(_) => tracing::warn!(
                    records = to_replay,
                    "the replay is still running (is the store down?); serving anyway, new deliveries queue behind it on disk"
                ),
            }
        }

        let state = web::Data::new(WebhookState {
            verifier: Verifier::with_expiring(&secrets, &expiring, settings.signature_tolerance.as_secs()),
            spool: spool.clone(),
            max_body_bytes: settings.max_body_bytes.get(),
            body_timeout: settings.body_timeout,
        });
        let admin = web::Data::new(AdminState { spool: spool.clone(), store, subscription });
        let listener = bind(settings.listen)?;
        let port = listener.local_addr().map_err(StartupError::Server)?.port();
        let (admin_server, admin_port) = match settings.admin_listen {
            Some(addr) => {
                let listener = bind(addr)?;
                let port = listener.local_addr().map_err(StartupError::Server)?.port();
                let admin = admin.clone();
                let server = HttpServer::new(move || {
                    App::new().configure(|cfg| http::configure_admin(cfg, admin.clone(), true))
                })
                .disable_signals()
                .workers(1)
                .listen(listener)
                .map_err(StartupError::Server)?
                .run();
                (Some(server), Some(port))
            }
            None => (None, None),
        };
        let on_main = admin_server.is_none();
        let mut server = HttpServer::new(move || {
            App::new().configure(|cfg| {
                http::configure_webhook(cfg, state.clone());
                if on_main {
                    http::configure_admin(cfg, admin.clone(), false);
                }
            })
        })
        .disable_signals()
        // A refused body's connection closes at once instead of lingering to read what the
        // sender still pushes (see `http::body`).
        .client_disconnect_timeout(Duration::ZERO)
        .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1));
        if let Some(n) = settings.workers {
            server = server.workers(n.get());
        }
        let server = match tls_config {
            Some(config) => server.listen_rustls_0_23(listener, config),
            None => server.listen(listener),
        }
        .map_err(StartupError::Server)?
        .run();
        tracing::info!(
            listen = %settings.listen, port, admin_port, https = settings.tls.is_some(), storage = %settings.storage, data_dir = %data_dir.display(),
            secrets = secrets.len(), "oncehub-bridge ready; POST deliveries to {}", WEBHOOK_PATH
        );
        let admin = admin_server.map(|server| (server.handle(), tokio::spawn(server)));
        Ok(Application {
            port,
            admin_port,
            server,
            admin,
            spool,
            batcher,
            abort,
            shutdown_timeout: settings.shutdown_timeout,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port of `--admin-listen`, when set.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin_port
    }

    /// Serves until `stop` is cancelled, then shuts down in order within the deadline.
    pub async fn run_until_stopped(self, stop: CancellationToken) -> Result<BatcherReport, StartupError> {
        let handle = self.server.handle();
        let admin = self.admin;
        // Polled here, not spawned: in the binary this runs on the main thread, so the HTTP worker
        // threads it starts keep the default priority (see `background_priority`).
        let mut server = std::pin::pin!(self.server);
        let mut server_done = false;
        let mut batcher = self.batcher;
        // The batcher only ends early on an error (the spool cannot be read, say): then the
        // service stops too, non-zero, so a supervisor restarts it and the spool is replayed.
        let mut ended = None;
        let served = tokio::select! {
            () = stop.cancelled() => Ok(()),
            r = &mut server => {
                server_done = true;
                r.map_err(StartupError::Server)
            }
            r = &mut batcher => {
                ended = Some(r);
                Ok(())
            }
        };
        tracing::info!("shutting down: refusing new deliveries, flushing pending files");
        let deadline = tokio::time::Instant::now() + self.shutdown_timeout;
        // The server future is polled here, so it must run alongside the stop request it answers.
        let stopped = handle.stop(true);
        if server_done {
            stopped.await;
        } else {
            let (_, _) = tokio::join!(stopped, &mut server);
        }
        self.spool.close();
        let joined = match ended {
            Some(r) => Ok(r),
            None => tokio::time::timeout_at(deadline, &mut batcher).await,
        };
        let spool = self.spool.clone();
        let _ = tokio::task::spawn_blocking(move || spool.close_and_join()).await;
        let stats = self.spool.stats();
        tracing::info!(
            records = stats.records,
            fsyncs = stats.fsyncs,
            duplicates = stats.duplicates,
            records_per_fsync = format!("{:.1}", stats.records as f64 / stats.fsyncs.max(1) as f64),
            "spool closed"
        );
        let report = match joined {
            Ok(joined) => joined??,
            Err(_) => {
                self.abort.cancel();
                let _ = batcher.await;
                return Err(StartupError::Deadline(self.shutdown_timeout));
            }
        };
        if let Some((handle, task)) = admin {
            handle.stop(false).await;
            let _ = task.await;
        }
        tracing::info!(records = report.records, files = report.files, rows = report.rows_written, "stopped cleanly");
        served.map(|()| report)
    }
}

fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source })
}

/// Auto-registration: makes sure the subscription is in place; its secret (plus any configured
/// ones) verifies deliveries at once, and replaced secrets until their grace period ends.
async fn subscribe(
    settings: &ServeSettings,
    sub: &SubscriptionSettings,
) -> Result<(Vec<WebhookSecret>, Vec<(WebhookSecret, i64)>, Arc<SubscriptionWatch>), StartupError> {
    let client = OnceHubClient::new(&sub.api.base, sub.api.key.clone()).map_err(SubscriptionError::from)?;
    let ensured = ensure(&client, &sub.desired, &settings.data_dir, sub.grace).await?;
    let mut secrets = match &settings.secrets {
        SecretSource::Configured(list) => list.clone(),
        SecretSource::LocalFile => Vec::new(),
    };
    secrets.extend(ensured.state.secret());
    let expiring = ensured
        .state
        .previous_secrets(chrono::Utc::now())
        .into_iter()
        .map(|(s, until)| (s, until.timestamp()))
        .collect();
    Ok((secrets, expiring, Arc::new(SubscriptionWatch::new(client, ensured.state.id.clone()))))
}

fn resolve_secrets(settings: &ServeSettings) -> Result<Vec<WebhookSecret>, StartupError> {
    match &settings.secrets {
        SecretSource::Configured(list) => Ok(list.clone()),
        SecretSource::LocalFile => {
            let path = secret::secret_file(&settings.data_dir);
            let (secret, generated) = secret::load_or_generate(&path)?;
            if generated {
                tracing::info!(path = %path.display(), "no --webhook-secret given: generated one and kept it here (mode 0600)");
            } else {
                tracing::info!(path = %path.display(), "using the webhook secret kept here");
            }
            tracing::info!(
                "send a signed test delivery with: oncehub-bridge send-test-event --all --url http://{}{} --data-dir {}",
                settings.listen,
                WEBHOOK_PATH,
                settings.data_dir.display()
            );
            Ok(vec![secret])
        }
    }
}

/// Lowers the calling thread's scheduling priority (nice 10). The runtime's threads run the
/// batcher (JSON decoding, Parquet encoding, uploads): work the spool absorbs when it lags, while
/// the HTTP workers and the spool writer, started from the main thread, keep the default priority
/// so acknowledgements are not queued behind encoding on a busy machine.
pub fn background_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), 10) {
        tracing::debug!(error = %e, "cannot lower the batcher threads' priority");
    }
}
