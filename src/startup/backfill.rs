//! `serve --backfill-since`: the backfill ([`crate::backfill`]) as a task of the service,
//! delivering straight into its spool (so deliveries are fsynced, de-duplicated and committed like
//! webhooks, and acknowledgements of webhooks never wait for it: each append joins the spool's
//! group commit like any request). It goes on from an interrupted run, else reads from the last
//! complete run minus a day, else from `--backfill-since`; then again every `--backfill-every`.
//! An error (the API down, the key revoked) is logged and retried; it never stops the service.

use std::path::PathBuf;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backfill::{Backfill, Deliver, Start};
use crate::config::{BACKFILL_OVERLAP, BackfillSettings};
use crate::oncehub::OnceHubClient;
use crate::spool::Spool;

/// After a failed run, the next attempt (from its last page) comes this much later.
const RETRY_AFTER: Duration = Duration::from_secs(300);

/// Starts the task; it stops when `stop` fires (a page in flight is read again next time).
pub(super) fn spawn(
    settings: &BackfillSettings,
    spool: Spool,
    data_dir: PathBuf,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let client = match OnceHubClient::new(&settings.api.base, settings.api.key.clone()) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the OnceHub API client; no backfill");
            return None;
        }
    };
    let backfill = Backfill::new(client, Deliver::Spool(spool), &data_dir);
    let (first, every) = (settings.first, settings.every);
    Some(tokio::spawn(async move {
        loop {
            let start = Start::Continue { first, overlap: BACKFILL_OVERLAP };
            let pause = tokio::select! {
                () = stop.cancelled() => return,
                done = backfill.run(start, None, &|_| {}) => match done {
                    Ok(summary) => {
                        tracing::info!(%summary, "backfill complete");
                        match every {
                            Some(every) => every,
                            None => return,
                        }
                    }
                    Err(crate::backfill::BackfillError::Stopped) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, retry_in_s = RETRY_AFTER.as_secs(), "backfill interrupted; it goes on from its last page");
                        RETRY_AFTER
                    }
                },
            };
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => {}
            }
        }
    }))
}
