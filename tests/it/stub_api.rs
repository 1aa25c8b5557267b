//! A stand-in for the OnceHub v2 API (shared/oncehub-api.md §1–2) on 127.0.0.1, for the tests:
//! `API-Key` auth (401 for a wrong key, 403 for a plan without API access), `GET /v2/test`,
//! webhooks list (cursor pages, newest first, no secrets), get, create (https URL, known events,
//! unique name → 409, secret returned once), delete (404 when gone), the documented error body,
//! a `Request-Id` on every answer, the 5 requests/s limit (429), and injected failures. For the
//! backfill (§11): `GET /v2/bookings` with cursor pages, `last_updated_time.gt/.lt`, `expand`
//! (contact and conversation as ids or objects), and the per-IP window cap (200 per 5 minutes,
//! scaled down by the tests) with 429 beyond it and a count of the most requests seen in a window.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

pub const API_KEY: &str = "ohk_test_0123456789abcdef";

const EVENTS: [&str; 13] = [
    "booking.scheduled",
    "booking.rescheduled",
    "booking.reassigned",
    "booking.canceled_then_rescheduled",
    "booking.canceled_reschedule_requested",
    "booking.canceled",
    "booking.completed",
    "booking.no_show",
    "conversation.started",
    "conversation.closed",
    "conversation.abandoned",
    "booking",
    "conversation",
];

#[derive(Debug, Clone)]
pub struct Hook {
    pub id: String,
    pub name: String,
    pub url: String,
    pub events: Vec<String>,
    pub secret: String,
    pub created: String,
}

#[derive(Default)]
struct State {
    key: String,
    forbidden: bool,
    hooks: Vec<Hook>,
    next: u64,
    requests: u64,
    fail_next: VecDeque<u16>,
    recent: VecDeque<Instant>,
    log: Vec<String>,
    rate_limited: u64,
    /// Listed bookings and contacts, newest `last_updated_time` first.
    bookings: Vec<Value>,
    contacts: Vec<Value>,
    /// The per-IP cap: requests per period.
    window: Option<(usize, Duration)>,
    /// When each list call arrived, and its path and query.
    arrivals: Vec<Instant>,
    queries: Vec<(String, String)>,
    window_limited: u64,
    /// Bookings pages answered before every later call gets 401 (a revoked key).
    pages_left: Option<u64>,
}

/// The running stand-in; stopped on drop.
pub struct StubApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
    handle: actix_web::dev::ServerHandle,
}

impl StubApi {
    pub fn start() -> StubApi {
        Self::start_with_key(API_KEY)
    }

    /// A stand-in that accepts only `key`.
    pub fn start_with_key(key: &str) -> StubApi {
        let state = Arc::new(Mutex::new(State { key: key.to_owned(), ..State::default() }));
        let shared = web::Data::from(state.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(shared.clone())
                .route("/v2/test", web::get().to(test_key))
                .route("/v2/webhooks", web::get().to(list))
                .route("/v2/webhooks", web::post().to(create))
                .route("/v2/webhooks/{id}", web::get().to(get))
                .route("/v2/webhooks/{id}", web::delete().to(delete))
                .route("/v2/bookings", web::get().to(list_bookings))
                .route("/v2/contacts", web::get().to(list_contacts))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        std::thread::spawn(move || actix_web::rt::System::new().block_on(server));
        StubApi { port, state, handle }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    pub fn hooks(&self) -> Vec<Hook> {
        self.state().hooks.clone()
    }

    /// Adds a subscription as if made elsewhere (the UI, another tool).
    pub fn seed(&self, name: &str, url: &str, events: &[&str]) -> Hook {
        let mut s = self.state();
        let hook = new_hook(&mut s, name, url, events.iter().map(|e| (*e).to_owned()).collect());
        s.hooks.push(hook.clone());
        hook
    }

    /// The plan loses (or gets) API access: every call answers 403.
    pub fn set_forbidden(&self, forbidden: bool) {
        self.state().forbidden = forbidden;
    }

    /// The next calls answer these statuses (429, 500...) before anything else.
    pub fn fail_next(&self, statuses: &[u16]) {
        self.state().fail_next.extend(statuses);
    }

    /// `METHOD /path` of every call so far.
    pub fn calls(&self) -> Vec<String> {
        self.state().log.clone()
    }

    /// Calls refused for going over 5 per second.
    pub fn rate_limited(&self) -> u64 {
        self.state().rate_limited
    }

    /// Serves `n` bookings, last updated one minute apart back from `newest`, in the shapes of
    /// §11 (contact, conversation, owner as ids; objects when expanded).
    pub fn seed_bookings(&self, n: usize, newest: chrono::DateTime<chrono::Utc>) {
        let mut s = self.state();
        s.bookings = (0..n)
            .map(|i| {
                let updated = newest - chrono::Duration::minutes(i as i64);
                let created = updated - chrono::Duration::days(3);
                json!({
                    "object": "booking", "id": format!("BKNG-API{i:06}"), "tracking_id": format!("TRK{i:06}"),
                    "subject": "Intro call", "status": if i % 7 == 0 { "canceled" } else { "scheduled" },
                    "in_trash": false, "duration_minutes": 30, "owner": format!("USR-{:03}", i % 5),
                    "creation_time": created.to_rfc3339(), "last_updated_time": updated.to_rfc3339(),
                    "starting_time": (created + chrono::Duration::days(7)).to_rfc3339(),
                    "customer_timezone": "Europe/Paris", "contact": format!("CTC-{i:06}"),
                    "conversation": if i % 3 == 0 { json!(format!("CNV-{i:06}")) } else { Value::Null },
                    "utm_params": if i % 2 == 0 { json!({"source": "ads", "medium": "cpc", "campaign": "q3", "term": null, "content": null}) } else { Value::Null },
                    "form_submission": {"name": format!("Customer {i}"), "email": format!("c{i}@example.com")},
                })
            })
            .collect();
    }

    /// Serves `n` contacts, last updated one minute apart back from `newest`, with the fields of
    /// the API notes' Contact object (some null, custom fields of mixed types).
    pub fn seed_contacts(&self, n: usize, newest: chrono::DateTime<chrono::Utc>) {
        self.state().contacts = (0..n)
            .map(|i| {
                let updated = newest - chrono::Duration::minutes(i as i64);
                json!({
                    "object": "contact", "id": format!("CTC-{i:06}"), "email": format!("c{i}@example.com"),
                    "creation_time": (updated - chrono::Duration::days(30)).to_rfc3339(),
                    "last_updated_time": updated.to_rfc3339(), "last_interacted_time": null,
                    "owner": format!("USR-{:03}", i % 5), "status": if i % 4 == 0 { json!("Qualified") } else { Value::Null },
                    "first_name": "Carrie", "last_name": format!("Customer {i}"), "company": "Acme Inc",
                    "employees": 40 + i as i64, "has_consent": i % 2 == 0, "phone": null, "timezone": "Europe/Paris",
                    "custom_fields": [{"name": "plan", "value": "pro"}, {"name": "seats", "value": i}],
                })
            })
            .collect();
    }

    /// Gives booking `i` a `note` of `bytes` characters (a booking larger than a receiver takes).
    pub fn pad_booking(&self, i: usize, bytes: usize) {
        self.state().bookings[i]["note"] = json!("n".repeat(bytes));
    }

    /// The per-IP cap: at most `requests` per `period` (429 beyond).
    pub fn set_window(&self, requests: usize, period: Duration) {
        self.state().window = Some((requests, period));
    }

    /// After `pages` more list pages, every call answers 401.
    pub fn revoke_after(&self, pages: u64) {
        self.state().pages_left = Some(pages);
    }

    pub fn unrevoke(&self) {
        self.state().pages_left = None;
    }

    /// The queries of the bookings calls, in order.
    pub fn booking_queries(&self) -> Vec<String> {
        self.queries_of("/v2/bookings")
    }

    /// The queries of the contacts calls, in order.
    pub fn contact_queries(&self) -> Vec<String> {
        self.queries_of("/v2/contacts")
    }

    fn queries_of(&self, path: &str) -> Vec<String> {
        self.state().queries.iter().filter(|(p, _)| p == path).map(|(_, q)| q.clone()).collect()
    }

    /// Calls refused for going over the window cap.
    pub fn window_limited(&self) -> u64 {
        self.state().window_limited
    }

    /// The most calls that arrived within any `period`, and within any second.
    pub fn busiest(&self, period: Duration) -> (usize, usize) {
        let s = self.state();
        let most = |span: Duration| {
            (0..s.arrivals.len())
                .map(|i| s.arrivals[i..].iter().take_while(|t| t.duration_since(s.arrivals[i]) < span).count())
                .max()
                .unwrap_or(0)
        };
        (most(period), most(Duration::from_secs(1)))
    }
}

impl Drop for StubApi {
    fn drop(&mut self) {
        // On its own thread: the test may be inside a runtime.
        let handle = self.handle.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async { tokio::time::timeout(Duration::from_secs(2), handle.stop(false)).await })
        })
        .join();
    }
}

fn new_hook(s: &mut State, name: &str, url: &str, events: Vec<String>) -> Hook {
    s.next += 1;
    let secret: String = (0..32).map(|i| char::from_digit(((s.next * 7 + i * 13) % 16) as u32, 16).unwrap()).collect();
    Hook {
        id: format!("WHK-{:010}", s.next),
        name: name.to_owned(),
        url: url.to_owned(),
        events,
        secret,
        created: chrono::Utc::now().to_rfc3339(),
    }
}

fn view(h: &Hook, with_secret: bool) -> Value {
    let mut v = json!({"object": "webhook", "id": h.id, "api_version": "v2", "name": h.name, "url": h.url,
        "events": h.events, "creation_time": h.created});
    if with_secret {
        v["secret"] = json!(h.secret);
    }
    v
}

fn answer(status: u16, request_id: u64, body: Value) -> HttpResponse {
    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
        .insert_header(("Request-Id", format!("req_{request_id}")))
        .json(body)
}

fn error(status: u16, request_id: u64, kind: &str, message: &str, param: Option<&str>) -> HttpResponse {
    let mut body = json!({"type": kind, "message": message});
    if let Some(p) = param {
        body["param"] = json!(p);
    }
    answer(status, request_id, body)
}

/// Auth, rate limit and injected failures, common to every call. `Err` is the answer to send.
#[allow(clippy::result_large_err)]
fn gate<'a>(
    req: &HttpRequest,
    data: &'a web::Data<Mutex<State>>,
) -> Result<(MutexGuard<'a, State>, u64), HttpResponse> {
    let mut s = data.lock().unwrap();
    s.requests += 1;
    let id = s.requests;
    s.log.push(format!("{} {}", req.method(), req.path()));
    let now = Instant::now();
    while s.recent.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
        s.recent.pop_front();
    }
    s.recent.push_back(now);
    if s.recent.len() > 5 {
        s.rate_limited += 1;
        return Err(error(429, id, "rate_limit_error", "Request rate limit exceeded", None));
    }
    if let Some(status) = s.fail_next.pop_front() {
        return Err(match status {
            429 => error(429, id, "rate_limit_error", "Request rate limit exceeded", None),
            other => error(other, id, "api_error", "Something went wrong on our end", None),
        });
    }
    let key = req.headers().get("API-Key").and_then(|v| v.to_str().ok());
    if key != Some(s.key.as_str()) {
        return Err(error(401, id, "authentication_error", "Invalid API key provided", None));
    }
    if s.forbidden {
        return Err(error(403, id, "authentication_error", "API access requires an Enterprise plan", None));
    }
    Ok((s, id))
}

async fn test_key(req: HttpRequest, data: web::Data<Mutex<State>>) -> HttpResponse {
    match gate(&req, &data) {
        Ok((_, id)) => answer(200, id, json!({"message": "The API key is valid for account: Stand-in Account"})),
        Err(r) => r,
    }
}

async fn list(req: HttpRequest, data: web::Data<Mutex<State>>, q: web::Query<Vec<(String, String)>>) -> HttpResponse {
    let (s, id) = match gate(&req, &data) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return error(400, id, "invalid_request_error", "limit must be between 1 and 100", Some("limit"));
    }
    if get("after").is_some() && get("before").is_some() {
        return error(400, id, "invalid_request_error", "after and before cannot both be set", None);
    }
    let newest_first: Vec<&Hook> = s.hooks.iter().rev().collect();
    let start = match get("after") {
        Some(after) => match newest_first.iter().position(|h| h.id == after) {
            Some(i) => i + 1,
            None => return error(400, id, "invalid_request_error", "No such webhook", Some("after")),
        },
        None => 0,
    };
    let page: Vec<Value> = newest_first.iter().skip(start).take(limit).map(|h| view(h, false)).collect();
    let has_more = start + page.len() < newest_first.len();
    answer(200, id, json!({"object": "list", "data": page, "has_more": has_more}))
}

async fn get(req: HttpRequest, data: web::Data<Mutex<State>>, path: web::Path<String>) -> HttpResponse {
    let (s, id) = match gate(&req, &data) {
        Ok(g) => g,
        Err(r) => return r,
    };
    match s.hooks.iter().find(|h| h.id == *path) {
        Some(h) => answer(200, id, view(h, false)),
        None => error(404, id, "invalid_request_error", &format!("No such webhook: '{path}'"), Some("id")),
    }
}

async fn create(req: HttpRequest, data: web::Data<Mutex<State>>, body: web::Json<Value>) -> HttpResponse {
    let (mut s, id) = match gate(&req, &data) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let name = body["name"].as_str().unwrap_or_default().to_owned();
    let url = body["url"].as_str().unwrap_or_default().to_owned();
    let events: Vec<String> = body["events"]
        .as_array()
        .map(|a| a.iter().filter_map(|e| e.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    if !name.chars().any(|c| c.is_ascii_alphanumeric()) {
        return error(
            400,
            id,
            "invalid_request_error",
            "name must contain at least one alphanumeric character",
            Some("name"),
        );
    }
    if !url.starts_with("https://") {
        return error(400, id, "invalid_request_error", "url must be a valid https URL", Some("url"));
    }
    if events.is_empty() || events.iter().any(|e| !EVENTS.contains(&e.as_str())) {
        return error(400, id, "invalid_request_error", "events contains an invalid event type", Some("events"));
    }
    if s.hooks.iter().any(|h| h.name == name) {
        return error(409, id, "invalid_request_error", "A webhook with this name already exists", Some("name"));
    }
    let hook = new_hook(&mut s, &name, &url, events);
    s.hooks.push(hook.clone());
    answer(200, id, view(&hook, true))
}

async fn delete(req: HttpRequest, data: web::Data<Mutex<State>>, path: web::Path<String>) -> HttpResponse {
    let (mut s, id) = match gate(&req, &data) {
        Ok(g) => g,
        Err(r) => return r,
    };
    match s.hooks.iter().position(|h| h.id == *path) {
        Some(i) => {
            s.hooks.remove(i);
            answer(200, id, json!({"id": *path, "object": "webhook", "deleted": true}))
        }
        None => error(404, id, "invalid_request_error", &format!("No such webhook: '{path}'"), Some("id")),
    }
}

async fn list_bookings(
    req: HttpRequest,
    data: web::Data<Mutex<State>>,
    q: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    list_objects(req, data, q, |s| &s.bookings).await
}

async fn list_contacts(
    req: HttpRequest,
    data: web::Data<Mutex<State>>,
    q: web::Query<Vec<(String, String)>>,
) -> HttpResponse {
    list_objects(req, data, q, |s| &s.contacts).await
}

/// A list endpoint of §11 over `objects`: the window cap, the key, `limit`, the strict
/// `last_updated_time` range, `after`, and `expand` (bookings' contact and conversation).
async fn list_objects(
    req: HttpRequest,
    data: web::Data<Mutex<State>>,
    q: web::Query<Vec<(String, String)>>,
    objects: fn(&State) -> &Vec<Value>,
) -> HttpResponse {
    {
        let mut s = data.lock().unwrap();
        let now = Instant::now();
        s.arrivals.push(now);
        s.queries.push((req.path().to_owned(), req.query_string().to_owned()));
        if let Some((cap, period)) = s.window {
            let recent = s.arrivals.iter().filter(|t| now.duration_since(**t) < period).count();
            if recent > cap {
                s.window_limited += 1;
                s.requests += 1;
                let id = s.requests;
                return error(429, id, "rate_limit_error", "Request rate limit exceeded", None);
            }
        }
        if s.pages_left == Some(0) {
            s.requests += 1;
            let id = s.requests;
            return error(401, id, "authentication_error", "Invalid API key provided", None);
        }
    }
    let (mut s, id) = match gate(&req, &data) {
        Ok(g) => g,
        Err(r) => return r,
    };
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let limit: usize = get("limit").and_then(|l| l.parse().ok()).unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return error(400, id, "invalid_request_error", "limit must be between 1 and 100", Some("limit"));
    }
    let time = |k: &str| get(k).map(|v| chrono::DateTime::parse_from_rfc3339(&v).map(|t| t.to_utc()));
    let (gt, lt) = match (time("last_updated_time.gt").transpose(), time("last_updated_time.lt").transpose()) {
        (Ok(gt), Ok(lt)) => (gt, lt),
        _ => return error(400, id, "invalid_request_error", "Invalid date", Some("last_updated_time")),
    };
    if let (Some(gt), Some(lt)) = (gt, lt)
        && gt > lt
    {
        return error(400, id, "invalid_request_error", "gt is later than lt", Some("last_updated_time.gt"));
    }
    let expand = get("expand").unwrap_or_default();
    let in_range: Vec<&Value> = objects(&s)
        .iter()
        .filter(|b| {
            let t = chrono::DateTime::parse_from_rfc3339(b["last_updated_time"].as_str().unwrap()).unwrap().to_utc();
            gt.is_none_or(|g| t > g) && lt.is_none_or(|l| t < l)
        })
        .collect();
    let start = match get("after") {
        Some(after) => match in_range.iter().position(|b| b["id"] == after.as_str()) {
            Some(i) => i + 1,
            None => return error(400, id, "invalid_request_error", "No such object", Some("after")),
        },
        None => 0,
    };
    let page: Vec<Value> = in_range
        .iter()
        .skip(start)
        .take(limit)
        .map(|b| {
            let mut b = (*b).clone();
            if expand.contains("contact") {
                b["contact"] = json!({"object": "contact", "id": b["contact"], "email": b["form_submission"]["email"]});
            }
            if expand.contains("conversation") && b["conversation"].is_string() {
                b["conversation"] = json!({"object": "conversation", "id": b["conversation"], "status": "closed"});
            }
            b
        })
        .collect();
    let has_more = start + page.len() < in_range.len();
    if let Some(left) = s.pages_left.as_mut() {
        *left -= 1;
    }
    answer(200, id, json!({"object": "list", "data": page, "has_more": has_more}))
}
