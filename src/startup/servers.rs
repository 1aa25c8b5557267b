//! The listeners and the HTTP servers on them: the receiver (with the admin routes unless
//! `--admin-listen` gives them a listener of their own).
//!
//! The addresses are bound first thing at start-up, so a port in use stops the start before
//! anything is created; they start listening only when the servers start, so a connection that
//! gets through means the service is ready (replay done, subscription in place).

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::task::JoinHandle;

use super::StartupError;
use crate::config::ServeSettings;
use crate::http::{self, AdminState, WebhookState};

/// The bound listeners: the receiver's, and `--admin-listen`'s when set.
pub(super) struct Listeners {
    main: Socket,
    admin: Option<Socket>,
    pub port: u16,
    pub admin_port: Option<u16>,
}

impl Listeners {
    pub(super) fn bind(settings: &ServeSettings) -> Result<Listeners, StartupError> {
        let bind = |addr: SocketAddr| {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
                .map_err(|source| StartupError::Bind { addr, source })?;
            socket.set_reuse_address(true).map_err(|source| StartupError::Bind { addr, source })?;
            socket.bind(&addr.into()).map_err(|source| StartupError::Bind { addr, source })?;
            Ok::<_, StartupError>(socket)
        };
        let port_of = |s: &Socket| {
            let addr = s.local_addr().map_err(StartupError::Server)?;
            addr.as_socket()
                .map(|a| a.port())
                .ok_or_else(|| StartupError::Server(std::io::Error::other("not an IP socket")))
        };
        let main = bind(settings.listen)?;
        let admin = settings.admin_listen.map(bind).transpose()?;
        let port = port_of(&main)?;
        let admin_port = admin.as_ref().map(port_of).transpose()?;
        Ok(Listeners { main, admin, port, admin_port })
    }

    /// Starts the HTTP servers on the listeners (not yet polled: `run_until_stopped` drives them).
    pub(super) fn serve(
        &self,
        settings: &ServeSettings,
        tls_config: Option<rustls::ServerConfig>,
        state: web::Data<WebhookState>,
        admin: web::Data<AdminState>,
    ) -> Result<(actix_web::dev::Server, Option<AdminServer>), StartupError> {
        let listener = |s: &Socket| -> Result<TcpListener, StartupError> {
            let s = s.try_clone().map_err(StartupError::Server)?;
            s.listen(1024).map_err(StartupError::Server)?;
            Ok(s.into())
        };
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
