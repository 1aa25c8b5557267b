//! Building and running the service. [`Application::build`] runs in named steps: read the TLS
//! files, bind the listeners (a port in use stops the start before anything is created), open the
//! store, the instance id and the spool (recovering it), resolve the secrets (see `secrets`), start
//! the batcher, wait until it has replayed every record the store may not have (bounded by
//! [`REPLAY_WAIT`]), start the HTTP servers, say it is ready.
//! [`Application::run_until_stopped`] serves until the stop token fires, then shuts down in a fixed
//! order within the deadline: stop accepting and finish in-flight requests (a third of the deadline
//! at most) → close the spool → the batcher drains, flushes every pending file and acknowledges →
//! the writer thread exits → return.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix_web::web;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::batcher::{Batcher, BatcherError, BatcherReport};
use crate::config::ServeSettings;
use crate::http::tls;
use crate::http::{AdminState, WebhookState};
use crate::instance;
use crate::lake::LakeError;
use crate::metrics;
use crate::oncehub::SubscriptionError;
use crate::oncehub::WEBHOOK_PATH;
use crate::oncehub::signature::Verifier;
use crate::schema::{Catalog, SchemaError};
use crate::secret::SecretFileError;
use crate::sink::{StagingDir, StoreError, Uploader, from_root, open_root};
use crate::spool::{OpenError, Spool};

mod backfill;
mod lake;
mod maintenance;
mod secrets;
mod servers;

use secrets::Secrets;
use servers::{AdminServer, Listeners};

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
    #[error("cannot listen on {addr}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("the HTTP server failed: {0}")]
    Server(std::io::Error),
    #[error("pending files could not be written before shutdown: {0}")]
    Batcher(#[from] BatcherError),
    #[error(transparent)]
    Lake(#[from] LakeError),
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
    admin: Option<AdminServer>,
    spool: Spool,
    batcher: JoinHandle<Result<BatcherReport, BatcherError>>,
    abort: CancellationToken,
    shutdown_timeout: Duration,
    /// The background compaction and vacuum, with the token that stops it.
    upkeep: Option<(CancellationToken, JoinHandle<()>)>,
    /// `--backfill-since`: the background backfill, with the token that stops it.
    backfill: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Application {
    /// Builds the service in named steps; each failure stops the start with one clear line.
    pub async fn build(settings: ServeSettings) -> Result<Application, StartupError> {
        // Files and sockets first: a bad certificate or a port in use stops the start before
        // anything is created or logged as ready.
        let tls_config = settings.tls.as_ref().map(tls::server_config).transpose()?;
        let listeners = Listeners::bind(&settings)?;
        let data_dir = settings.data_dir.clone();
        std::fs::create_dir_all(&data_dir)
            .map_err(|source| StartupError::DataDir { path: data_dir.clone(), source })?;
        let root = open_root(&settings.storage)?;
        let store = from_root(&settings.storage, root.clone())?;
        metrics::handle();
        let writer = instance::load_or_create(&data_dir.join("instance-id")).map_err(StartupError::InstanceId)?;
        let (spool, reader, recovered) = Spool::open(settings.spool.clone())?;
        // After the spool's lock, so no other instance is writing there.
        let staging_dir = data_dir.join("staging");
        let staging = StagingDir::open(&staging_dir)
            .map_err(|source| StartupError::DataDir { path: staging_dir.clone(), source })?;
        // After the spool's lock: a second instance on this data dir stops before it touches
        // the subscription or the secret files.
        let secrets = Secrets::resolve(&settings).await?;
        let abort = CancellationToken::new();
        let uploads = Uploader::new(store.clone());
        let catalog = Arc::new(Catalog::load()?);
        let lake = lake::open(&settings, &root, &writer, catalog.clone()).await?;
        let inspector = settings.inspector.as_ref().map(|s| Arc::new(crate::inspector::Inspector::new(s)));
        let upkeep_stop = CancellationToken::new();
        let upkeep = maintenance::spawn(&settings, &root, store.clone(), &writer, catalog.clone(), upkeep_stop.clone())
            .map(|task| (upkeep_stop, task));
        let batcher = Batcher::new(
            catalog,
            settings.flush,
            writer,
            uploads.clone(),
            spool.clone(),
            (recovered.checkpoint, recovered.intents.clone()),
            abort.clone(),
        )
        .with_lake(lake, settings.commit_interval)
        .with_inspector(inspector.clone())
        .with_staging(staging);
        let progress = reader.progress();
        let batcher = tokio::spawn(batcher.run(reader));
        wait_for_replay(&recovered, &progress, &batcher).await;

        let state = web::Data::new(WebhookState {
            verifier: Verifier::with_expiring(
                &secrets.current,
                &secrets.expiring,
                settings.signature_tolerance.as_secs(),
            ),
            spool: spool.clone(),
            max_body_bytes: settings.max_body_bytes.get(),
            body_timeout: settings.body_timeout,
            inspector: inspector.clone(),
        });
        let admin = web::Data::new(AdminState {
            spool: spool.clone(),
            store,
            uploads,
            subscription: secrets.subscription.clone(),
            inspector: inspector.map(|i| crate::http::InspectorAccess::new(i, &settings)),
        });
        let (server, admin) = listeners.serve(&settings, tls_config, state, admin)?;
        log_ready(&settings, &listeners, &secrets);
        let backfill = settings.backfill.as_ref().and_then(|b| {
            let stop = CancellationToken::new();
            backfill::spawn(b, spool.clone(), data_dir.clone(), stop.clone()).map(|task| (stop, task))
        });
        Ok(Application {
            port: listeners.port,
            admin_port: listeners.admin_port,
            server,
            admin,
            spool,
            batcher,
            abort,
            shutdown_timeout: settings.shutdown_timeout,
            upkeep,
            backfill,
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
        if let Some((stop, _)) = &self.upkeep {
            stop.cancel();
        }
        // Before the spool closes: the backfill's deliveries in flight end as a page to read again.
        if let Some((stop, task)) = self.backfill {
            stop.cancel();
            let _ = task.await;
        }
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
        if let Some((_, task)) = self.upkeep
            && tokio::time::timeout_at(deadline, task).await.is_err()
        {
            tracing::warn!(
                "the background compaction did not stop before the deadline; its commit decides the partition"
            );
        }
        if let Some((handle, task)) = admin {
            handle.stop(false).await;
            let _ = task.await;
        }
        tracing::info!(records = report.records, files = report.files, rows = report.rows_written, "stopped cleanly");
        served.map(|()| report)
    }
}

/// Waits (up to [`REPLAY_WAIT`]) until the batcher has read every record the store may lack.
async fn wait_for_replay(
    recovered: &crate::spool::Recovered,
    progress: &std::sync::atomic::AtomicU64,
    batcher: &JoinHandle<Result<BatcherReport, BatcherError>>,
) {
    let to_replay = recovered.last.0 - recovered.checkpoint.0;
    if to_replay == 0 {
        return;
    }
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

/// The one line that says the service is up, and how to try it.
fn log_ready(settings: &ServeSettings, listeners: &Listeners, secrets: &Secrets) {
    tracing::info!(
        listen = %settings.listen, port = listeners.port, admin_port = listeners.admin_port, https = settings.tls.is_some(),
        storage = %settings.storage, data_dir = %settings.data_dir.display(), secrets = secrets.current.len(),
        "oncehub-bridge ready; POST deliveries to {}", WEBHOOK_PATH
    );
    if secrets.local_file {
        tracing::info!(
            "send a signed test delivery with: oncehub-bridge send-test-event --all --url http://127.0.0.1:{}{} --data-dir {}",
            listeners.port,
            WEBHOOK_PATH,
            settings.data_dir.display()
        );
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
