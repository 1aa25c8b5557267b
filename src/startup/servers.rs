//! The listeners and the HTTP servers on them: the receiver (with the admin routes unless
//! `--admin-listen` gives them a listener of their own).

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tokio::task::JoinHandle;

use super::StartupError;
use crate::config::ServeSettings;
use crate::http::{self, AdminState, WebhookState};

/// The bound listeners: the receiver's, and `--admin-listen`'s when set.
pub(super) struct Listeners {
    main: TcpListener,
    admin: Option<TcpListener>,
    pub port: u16,
    pub admin_port: Option<u16>,
}

impl Listeners {
    pub fn bind(settings: &ServeSettings) -> Result<Listeners, StartupError> {
        let bind = |addr| TcpListener::bind(addr).map_err(|source| StartupError::Bind { addr, source });
        let port_of = |l: &TcpListener| l.local_addr().map(|a| a.port()).map_err(StartupError::Server);
        let main = bind(settings.listen)?;
        let admin = settings.admin_listen.map(bind).transpose()?;
        let port = port_of(&main)?;
        let admin_port = admin.as_ref().map(port_of).transpose()?;
        Ok(Listeners { main, admin, port, admin_port })
    }

    /// Starts the HTTP servers on the listeners (not yet polled: `run_until_stopped` drives them).
    pub fn serve(
        &self,
        settings: &ServeSettings,
        tls_config: Option<rustls::ServerConfig>,
        state: web::Data<WebhookState>,
        admin: web::Data<AdminState>,
    ) -> Result<(actix_web::dev::Server, Option<AdminServer>), StartupError> {
        let listener = |l: &TcpListener| l.try_clone().map_err(StartupError::Server);
        let admin_server = match &self.admin {
            Some(l) => {
                let admin = admin.clone();
                let server = HttpServer::new(move || {
                    App::new().configure(|cfg| http::configure_admin(cfg, admin.clone(), true))
                })
                .disable_signals()
                .workers(1)
                .listen(listener(l)?)
                .map_err(StartupError::Server)?
                .run();
                Some((server.handle(), tokio::spawn(server)))
            }
            None => None,
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
        .shutdown_timeout(http_grace(settings.shutdown_timeout).as_secs().max(1));
        if let Some(n) = settings.workers {
            server = server.workers(n.get());
        }
        let server = match tls_config {
            Some(config) => server.listen_rustls_0_23(listener(&self.main)?, config),
            None => server.listen(listener(&self.main)?),
        }
        .map_err(StartupError::Server)?
        .run();
        Ok((server, admin_server))
    }
}

/// The admin server's handle and task.
pub(super) type AdminServer = (actix_web::dev::ServerHandle, JoinHandle<std::io::Result<()>>);

/// The part of the shutdown deadline in-flight requests may take; the final flush gets the rest.
fn http_grace(shutdown_timeout: Duration) -> Duration {
    shutdown_timeout / 3
}
