//! A destination for tests: a real HTTP server on a free port that records every request and
//! answers as told, per path.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;

/// How the sink answers requests to one path.
#[derive(Clone, Debug)]
pub enum Behaviour {
    Ok,
    /// Always this status.
    Status(u16),
    /// The first `n` requests of each `webhook-id` get `status`, later ones 200.
    FailFirst(usize, u16),
    /// 429 with `Retry-After: secs` on the first request of each `webhook-id`, then 200.
    RetryAfterOnce(u64),
    /// Answer 200 after this long.
    Hang(Duration),
    /// Answer 200 with this JSON body.
    Json(serde_json::Value),
    /// After `delay`, answer 500 to one request in `one_in` at random, 200 to the others.
    Flaky {
        one_in: u128,
        delay: Duration,
    },
    /// `status` to requests whose body contains `needle`, 200 to the others.
    RefuseBodies {
        needle: String,
        status: u16,
    },
}

/// One request the sink received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    pub at: Instant,
}

impl Received {
    /// A header's value.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// How the sink answered one request.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub path: String,
    pub webhook_id: String,
    pub status: u16,
    /// When the request arrived.
    pub at: Instant,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    outcomes: Mutex<Vec<Outcome>>,
    /// Requests being answered now, and the most at once, per path.
    concurrent: Mutex<HashMap<String, (usize, usize)>>,
    behaviour: Mutex<HashMap<String, Behaviour>>,
    seen: Mutex<HashMap<(String, String), usize>>,
}

/// The running sink (clones share it).
#[derive(Clone)]
pub struct Sink {
    pub base: String,
    state: Arc<State>,
}

impl Sink {
    /// Starts a sink on a free port.
    pub fn start() -> Sink {
        let state = Arc::new(State::default());
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .default_service(web::to(answer))
        })
        .workers(2)
        .listen(listener)
        .expect("listen")
        .run();
        actix_web::rt::spawn(server);
        Sink {
            base: format!("http://127.0.0.1:{port}"),
            state,
        }
    }

    /// The URL of a path on the sink.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sets how a path answers from now on.
    pub fn set(&self, path: &str, behaviour: Behaviour) {
        self.state
            .behaviour
            .lock()
            .expect("lock")
            .insert(path.to_string(), behaviour);
    }

    /// Everything received on a path so far.
    pub fn received(&self, path: &str) -> Vec<Received> {
        self.state
            .received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path == path)
            .cloned()
            .collect()
    }

    /// Waits until every one of `ids` arrived on `path`, failing the test after `limit`.
    pub async fn await_events(&self, path: &str, ids: &[String], limit: Duration, what: &str) {
        crate::helpers::eventually(limit, what, || async {
            let by = self.by_event(path);
            ids.iter().all(|id| by.contains_key(id)).then_some(())
        })
        .await
    }

    /// Requests received on a path per `webhook-id`.
    pub fn by_event(&self, path: &str) -> HashMap<String, Vec<Received>> {
        let mut map: HashMap<String, Vec<Received>> = HashMap::new();
        for r in self.received(path) {
            map.entry(r.header("webhook-id").to_string())
                .or_default()
                .push(r);
        }
        map
    }

    /// The most requests a path was answering at once.
    pub fn max_concurrent(&self, path: &str) -> usize {
        self.state
            .concurrent
            .lock()
            .expect("lock")
            .get(path)
            .map(|c| c.1)
            .unwrap_or(0)
    }

    /// How every request so far was answered, on every path.
    pub fn outcomes(&self) -> Vec<Outcome> {
        self.state.outcomes.lock().expect("lock").clone()
    }

    /// Distinct events received on a path, whatever the answer.
    pub fn distinct(&self, path: &str) -> usize {
        self.by_event(path).len()
    }

    /// When each event was answered 2xx on a path: more than one entry is a redelivery.
    pub fn delivered(&self, path: &str) -> HashMap<String, Vec<Instant>> {
        let mut map: HashMap<String, Vec<Instant>> = HashMap::new();
        for o in self.outcomes() {
            if o.path == path && (200..300).contains(&o.status) {
                map.entry(o.webhook_id).or_default().push(o.at);
            }
        }
        map
    }
}

async fn answer(req: HttpRequest, body: Bytes, state: web::Data<State>) -> HttpResponse {
    let path = req.path().to_string();
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect::<HashMap<_, _>>();
    let id = headers.get("webhook-id").cloned().unwrap_or_default();
    let id_for_outcome = id.clone();
    state.received.lock().expect("lock").push(Received {
        path: path.clone(),
        headers,
        body: body.clone(),
        at: Instant::now(),
    });
    let nth = {
        let mut seen = state.seen.lock().expect("lock");
        let n = seen.entry((path.clone(), id)).or_insert(0);
        *n += 1;
        *n
    };
    let behaviour = state
        .behaviour
        .lock()
        .expect("lock")
        .get(&path)
        .cloned()
        .unwrap_or(Behaviour::Ok);
    {
        let mut c = state.concurrent.lock().expect("lock");
        let entry = c.entry(path.clone()).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
    }
    let at = Instant::now();
    let response = match behaviour {
        Behaviour::RefuseBodies { needle, status } if contains(&body, needle.as_bytes()) => {
            HttpResponse::build(
                actix_web::http::StatusCode::from_u16(status).expect("valid status"),
            )
            .body("refused on purpose")
        }
        Behaviour::RefuseBodies { .. } => HttpResponse::Ok().body("ok"),
        other => respond(other, nth).await,
    };
    if let Some(entry) = state.concurrent.lock().expect("lock").get_mut(&path) {
        entry.0 -= 1;
    }
    state.outcomes.lock().expect("lock").push(Outcome {
        path,
        webhook_id: id_for_outcome,
        status: response.status().as_u16(),
        at,
    });
    response
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn respond(behaviour: Behaviour, nth: usize) -> HttpResponse {
    let status = |code: u16| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(code).expect("valid status"))
    };
    match behaviour {
        Behaviour::Ok => HttpResponse::Ok().body("ok"),
        Behaviour::Status(code) => status(code).body(format!("told to answer {code}")),
        Behaviour::FailFirst(n, code) if nth <= n => status(code).body("failing on purpose"),
        Behaviour::FailFirst(..) => HttpResponse::Ok().body("ok"),
        Behaviour::RetryAfterOnce(secs) if nth == 1 => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", secs.to_string()))
            .finish(),
        Behaviour::RetryAfterOnce(_) => HttpResponse::Ok().body("ok"),
        Behaviour::Json(v) => HttpResponse::Ok().json(v),
        Behaviour::Flaky { one_in, delay } => {
            actix_web::rt::time::sleep(delay).await;
            if uuid::Uuid::new_v4().as_u128().is_multiple_of(one_in) {
                status(500).body("failing at random")
            } else {
                HttpResponse::Ok().body("ok")
            }
        }
        Behaviour::Hang(d) => {
            actix_web::rt::time::sleep(d).await;
            HttpResponse::Ok().body("ok")
        }
        // Answered by `answer`, which has the body.
        Behaviour::RefuseBodies { .. } => HttpResponse::Ok().body("ok"),
    }
}
