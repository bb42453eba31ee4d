//! A mock API server for the apply layers' unit tests (controller-rs's style): each test
//! answers the requests a reconcile makes and asserts their method, path and body.

use http::{Method, Request, Response};
use kube::client::Body;
use kube::Client;
use serde_json::Value;
use tower_test::mock::{self, Handle};

/// The mock's side of a client.
pub type Server = Handle<Request<Body>, Response<Body>>;

/// A client whose requests go to the returned mock server.
pub fn client() -> (Client, Server) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), handle)
}

/// What one request asked (method, `path?query`, body).
pub type Seen = (Method, String, Value);

/// What a request asks: method, path, `path?query` and the JSON body.
async fn read(request: Request<Body>) -> (Method, String, String, Value) {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let bytes = request.into_body().collect_bytes().await.expect("body");
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let full = format!("{path}?{query}");
    (method, path, full, body)
}

/// Sends `reply`: a Status with its own code, as the API server sends it, or an object with
/// 200.
fn send(respond: tower_test::mock::SendResponse<Response<Body>>, reply: &Value) {
    let code = match reply["kind"].as_str() {
        Some("Status") => reply["code"].as_u64().unwrap_or(500) as u16,
        _ => 200,
    };
    respond.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(reply).expect("json")))
            .expect("response"),
    );
}

/// Answers the next `n` requests with `answer`; returns what was asked.
pub fn serve(
    mut handle: Server,
    n: usize,
    answer: impl Fn(&Method, &str, &Value) -> Value + Send + 'static,
) -> tokio::task::JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        for _ in 0..n {
            let (request, respond) = handle.next_request().await.expect("a request");
            let (method, path, full, body) = read(request).await;
            send(respond, &answer(&method, &path, &body));
            seen.push((method, full, body));
        }
        seen
    })
}

/// Like [`serve`], for as many requests as come until none has for half a second (a pass that
/// also publishes Events makes a number of requests that depends on their timing).
pub fn serve_until_quiet(
    mut handle: Server,
    answer: impl Fn(&Method, &str, &Value) -> Value + Send + 'static,
) -> tokio::task::JoinHandle<Vec<Seen>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        let quiet = std::time::Duration::from_millis(500);
        while let Ok(Some((request, respond))) =
            tokio::time::timeout(quiet, handle.next_request()).await
        {
            let (method, path, full, body) = read(request).await;
            send(respond, &answer(&method, &path, &body));
            seen.push((method, full, body));
        }
        seen
    })
}

/// A failure as the API server answers it.
pub fn failure(code: u16, reason: &str, message: &str) -> Value {
    serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "reason": reason, "code": code, "message": message})
}

/// A success without an object (a delete's answer).
pub fn success() -> Value {
    serde_json::json!({"apiVersion": "v1", "kind": "Status", "status": "Success"})
}

/// The requests whose `path?query` contains `what`.
pub fn requests_to<'a>(seen: &'a [Seen], what: &str) -> Vec<&'a Seen> {
    seen.iter()
        .filter(|(_, path, _)| path.contains(what))
        .collect()
}

/// One reconcile of `object` that must fail, then the error policy: what it asks for next.
pub async fn failed_pass<R: crate::controller::Reconciler>(
    reconciler: &std::sync::Arc<R>,
    object: std::sync::Arc<R::Kind>,
) -> crate::queue::Action {
    let error = reconciler
        .clone()
        .reconcile(object.clone())
        .await
        .expect_err("the reconcile fails");
    crate::controller::error_policy(reconciler.as_ref(), &object, &error)
}
