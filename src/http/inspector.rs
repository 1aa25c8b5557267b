//! The delivery inspector's routes on the admin listener: the page at `/` (embedded: HTML, one
//! script and one stylesheet, no external asset), `POST /login`, and the JSON behind the page,
//! `GET /api/status`, `GET /api/deliveries` and `GET /api/deliveries/{id}`.
//!
//! Who may see it (the page shows customer data): on a loopback admin address, anyone local
//! (requests naming another host, or passed on by a proxy, are refused; and with `--public-url`
//! the webhook listener counts as public, so only a loopback `--admin-listen` of its own is
//! open); with `--admin-token`, only
//! a request bearing it (`Authorization: Bearer`, or the HttpOnly cookie the login form sets),
//! compared in constant time; otherwise nobody: 404. Every answer carries a strict
//! Content-Security-Policy; the script renders every value from a delivery as text.

use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;

use super::AdminState;
use crate::config::ServeSettings;
use crate::inspector::{Filter, Inspector};
use crate::oncehub::SubscriptionState;
use crate::secret::AdminToken;

const PAGE: &str = include_str!("assets/inspector.html");
const LOGIN: &str = include_str!("assets/login.html");
const SCRIPT: &str = include_str!("assets/inspector.js");
const STYLE: &str = include_str!("assets/inspector.css");

/// The cookie the login form sets.
const COOKIE: &str = "oncehub_bridge_admin";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Who may open the inspector.
#[derive(Debug, Clone)]
enum Access {
    /// The admin routes are on a loopback address: local requests.
    Loopback,
    Token(AdminToken),
    /// Not loopback and no token: nobody (404).
    Closed,
}

/// The inspector and who may see it.
#[derive(Debug, Clone)]
pub(crate) struct InspectorAccess {
    pub inspector: Arc<Inspector>,
    access: Access,
    /// `<data-dir>/subscription.json` when `serve` manages the subscription.
    subscription_file: Option<PathBuf>,
    /// Served over HTTPS: the login cookie is `Secure`.
    https: bool,
}

impl InspectorAccess {
    pub(crate) fn new(inspector: Arc<Inspector>, settings: &ServeSettings) -> InspectorAccess {
        let addr = settings.admin_listen.unwrap_or(settings.listen);
        // With a public URL the webhook listener is reached through a proxy from the internet, so
        // a loopback address proves nothing about who asks: then only a listener of its own is
        // trusted without a token.
        let exposed = settings.admin_listen.is_none() && settings.subscription.is_some();
        let access = match (&settings.admin_token, addr.ip().is_loopback() && !exposed) {
            (Some(token), _) => Access::Token(token.clone()),
            (None, true) => Access::Loopback,
            (None, false) => {
                let why = if exposed {
                    "the webhook listener is public (--public-url); give the admin routes a loopback --admin-listen of their own"
                } else {
                    "the admin address is not loopback"
                };
                tracing::info!(
                    address = %addr,
                    "the delivery inspector at / is closed: {why}, or set --admin-token (ONCEHUB_BRIDGE_ADMIN_TOKEN) to open it"
                );
                Access::Closed
            }
        };
        let subscription_file = settings.subscription.as_ref().map(|_| SubscriptionState::path(&settings.data_dir));
        InspectorAccess { inspector, access, subscription_file, https: settings.tls.is_some() }
    }
}

/// The routes (with `configure_admin`).
pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(page))
        .route("/inspector.js", web::get().to(script))
        .route("/inspector.css", web::get().to(style))
        .route("/login", web::post().to(login))
        .route("/api/status", web::get().to(status))
        .route("/api/deliveries", web::get().to(deliveries))
        .route("/api/deliveries/{id}", web::get().to(delivery));
}

/// Refused, and how.
enum Refused {
    NotFound,
    /// No token offered: the login form (page) or 401 (JSON).
    NoToken,
    WrongToken,
}

fn admit(req: &HttpRequest, state: &AdminState) -> Result<Arc<Inspector>, Refused> {
    let Some(access) = &state.inspector else { return Err(Refused::NotFound) };
    match &access.access {
        Access::Closed => Err(Refused::NotFound),
        Access::Loopback if local_host(req) && !forwarded(req) => Ok(access.inspector.clone()),
        Access::Loopback => Err(Refused::NotFound),
        Access::Token(token) => match offered(req) {
            Offered::Nothing => Err(Refused::NoToken),
            Offered::Bearer(t) if token.matches(&t) => Ok(access.inspector.clone()),
            Offered::Session(s) if token.matches_session(&s) => Ok(access.inspector.clone()),
            Offered::Bearer(_) | Offered::Session(_) => Err(Refused::WrongToken),
        },
    }
}

/// The request names a loopback host (a page elsewhere that rebinds its name to 127.0.0.1
/// still sends its own name).
fn local_host(req: &HttpRequest) -> bool {
    let Some(host) = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// A proxy passed the request on: whoever sent it is not necessarily local.
fn forwarded(req: &HttpRequest) -> bool {
    ["forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip", "via"]
        .iter()
        .any(|h| req.headers().contains_key(*h))
}

/// What a request offers: the token in the bearer header, or the login cookie's session value.
enum Offered {
    Nothing,
    Bearer(String),
    Session(String),
}

fn offered(req: &HttpRequest) -> Offered {
    let bearer =
        req.headers().get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()).and_then(|h| h.strip_prefix("Bearer "));
    match (bearer, req.cookie(COOKIE)) {
        (Some(token), _) => Offered::Bearer(token.to_owned()),
        (None, Some(cookie)) => Offered::Session(cookie.value().to_owned()),
        (None, None) => Offered::Nothing,
    }
}

fn secured(mut builder: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    builder
}

fn refused_page(refused: Refused) -> HttpResponse {
    match refused {
        Refused::NotFound => HttpResponse::NotFound().finish(),
        Refused::NoToken => secured(HttpResponse::Unauthorized()).content_type("text/html; charset=utf-8").body(LOGIN),
        Refused::WrongToken => secured(HttpResponse::Unauthorized())
            .content_type("text/html; charset=utf-8")
            .body(LOGIN.replace("<!--error-->", "<p class=\"error\">That is not the admin token.</p>")),
    }
}

fn refused_json(refused: Refused) -> HttpResponse {
    match refused {
        Refused::NotFound => HttpResponse::NotFound().finish(),
        Refused::NoToken | Refused::WrongToken => secured(HttpResponse::Unauthorized())
            .json(json!({"error": "unauthorized", "message": "the admin token is missing or wrong"})),
    }
}

async fn page(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    match admit(&req, &state) {
        Ok(_) => secured(HttpResponse::Ok()).content_type("text/html; charset=utf-8").body(PAGE),
        Err(r) => refused_page(r),
    }
}

async fn script(state: web::Data<AdminState>) -> HttpResponse {
    asset(&state, "text/javascript; charset=utf-8", SCRIPT)
}

async fn style(state: web::Data<AdminState>) -> HttpResponse {
    asset(&state, "text/css; charset=utf-8", STYLE)
}

/// The page's script and stylesheet hold no data: served wherever the inspector is on.
fn asset(state: &AdminState, kind: &str, body: &'static str) -> HttpResponse {
    match &state.inspector {
        Some(InspectorAccess { access: Access::Loopback | Access::Token(_), .. }) => {
            secured(HttpResponse::Ok()).content_type(kind.to_owned()).body(body)
        }
        _ => HttpResponse::NotFound().finish(),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(state: web::Data<AdminState>, form: web::Form<LoginForm>) -> HttpResponse {
    let Some(InspectorAccess { access: Access::Token(token), https, .. }) = &state.inspector else {
        return HttpResponse::NotFound().finish();
    };
    if !token.matches(&form.token) {
        tracing::warn!("a wrong admin token was offered to the inspector's login form");
        return refused_page(Refused::WrongToken);
    }
    let cookie = actix_web::cookie::Cookie::build(COOKIE, token.session())
        .http_only(true)
        .secure(*https)
        .same_site(actix_web::cookie::SameSite::Strict)
        .max_age(actix_web::cookie::time::Duration::hours(12))
        .path("/")
        .finish();
    secured(HttpResponse::SeeOther()).insert_header((header::LOCATION, "/")).cookie(cookie).finish()
}

async fn status(req: HttpRequest, state: web::Data<AdminState>) -> HttpResponse {
    let inspector = match admit(&req, &state) {
        Ok(i) => i,
        Err(r) => return refused_json(r),
    };
    let (ready, checks) = super::health::readiness(&state).await;
    let subscription = state
        .inspector
        .as_ref()
        .and_then(|a| a.subscription_file.as_deref())
        .and_then(|path| SubscriptionState::load(path).ok().flatten())
        .map(|s| json!({"id": s.id, "url": s.url, "events": s.events}));
    let spool = state.spool.stats();
    let mut body = inspector.status();
    body["ready"] = json!({"ready": ready, "checks": checks});
    body["subscription"] = json!(subscription);
    body["spool"] = json!({"records": spool.backlog, "bytes": spool.disk_bytes});
    secured(HttpResponse::Ok()).json(body)
}

#[derive(Deserialize)]
struct Query {
    outcome: Option<String>,
    trigger: Option<String>,
    limit: Option<usize>,
}

async fn deliveries(req: HttpRequest, state: web::Data<AdminState>, q: web::Query<Query>) -> HttpResponse {
    let inspector = match admit(&req, &state) {
        Ok(i) => i,
        Err(r) => return refused_json(r),
    };
    let q = q.into_inner();
    let blank = |s: Option<String>| s.filter(|s| !s.trim().is_empty());
    let filter = Filter { outcome: blank(q.outcome), trigger: blank(q.trigger), limit: q.limit };
    secured(HttpResponse::Ok()).json(inspector.deliveries(&filter))
}

async fn delivery(req: HttpRequest, state: web::Data<AdminState>, id: web::Path<u64>) -> HttpResponse {
    let inspector = match admit(&req, &state) {
        Ok(i) => i,
        Err(r) => return refused_json(r),
    };
    match inspector.delivery(id.into_inner()) {
        Some(d) => secured(HttpResponse::Ok()).json(d),
        None => secured(HttpResponse::NotFound()).json(
            json!({"error": "not_found", "message": "no such delivery in the inspector (older ones are dropped)"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn only_a_loopback_host_name_is_local() {
        let host = |h: &str| local_host(&TestRequest::default().insert_header((header::HOST, h)).to_http_request());
        assert!(host("127.0.0.1:8080") && host("localhost:8080") && host("[::1]:8080") && host("LOCALHOST"));
        assert!(!host("evil.example:8080") && !host("10.0.0.1:8080") && !host("127.0.0.1.evil.example"));
        let proxied = TestRequest::default().insert_header(("x-forwarded-for", "203.0.113.9")).to_http_request();
        assert!(forwarded(&proxied) && !forwarded(&TestRequest::default().to_http_request()));
    }

    #[test]
    fn the_token_comes_from_the_bearer_header_or_the_cookie_holds_a_session_value() {
        let r = TestRequest::default().insert_header((header::AUTHORIZATION, "Bearer abc")).to_http_request();
        assert!(matches!(offered(&r), Offered::Bearer(t) if t == "abc"));
        let r = TestRequest::default().cookie(actix_web::cookie::Cookie::new(COOKIE, "xyz")).to_http_request();
        assert!(matches!(offered(&r), Offered::Session(s) if s == "xyz"));
        assert!(matches!(offered(&TestRequest::default().to_http_request()), Offered::Nothing));
        let token = AdminToken::parse("s3cret-0123456789").unwrap();
        assert!(token.matches("s3cret-0123456789") && !token.matches("s3cret-012345678") && !token.matches(""));
        let session = token.session();
        assert!(
            !session.contains("s3cret")
                && token.matches_session(&session)
                && !token.matches_session("s3cret-0123456789")
        );
    }
}
