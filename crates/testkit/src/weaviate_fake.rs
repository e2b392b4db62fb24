//! An in-memory, stateful fake Weaviate for tests, since no Weaviate can run on the build
//! machines. It keeps classes and objects as a single-node Weaviate does, answers the REST and
//! GraphQL calls listed below with Weaviate's defaults and messages, and checks every request
//! and every response it sends against Weaviate's official OpenAPI document of the version it
//! plays (`reference/weaviate/openapi-v{version}.json`).
//!
//! Whatever breaks the document is recorded in [`FakeWeaviate::violations`] and the request is
//! still answered, so a test can end with `assert!(fake.violations().is_empty())`:
//!
//! - a request that matches no operation of the document (404);
//! - a request body, or a query parameter the operation declares, that does not fit the
//!   document (422 with an `ErrorResponse`, the request is not carried out);
//! - an operation of the document the fake does not serve (404);
//! - a response whose status or body the document does not describe for the operation.
//!
//! How the document's schemas are read (Swagger extensions, closed objects) is described in
//! the `document` module.
//!
//! Served, under `/v1`: `.well-known/live` and `ready`, `meta`, `schema` (GET, POST),
//! `schema/{className}` (GET, PUT, DELETE), `schema/{className}/properties` (POST),
//! `schema/{className}/shards` (GET), `nodes` and `nodes/{className}` (GET), `batch/objects`
//! (POST), `objects/{className}/{id}` (GET, DELETE) and `graphql` (POST; `Get` with
//! `nearVector` and `limit`, `Aggregate { meta { count } }`).
//!
//! The fake behaves as a single node with `AUTOSCHEMA_ENABLED=false` (objects of an unknown
//! class or with an unknown property fail) and without multi-tenancy or named vectors. Modules
//! are only names: a class may use an enabled vectorizer, but the fake computes no vectors, so
//! objects sent without one are stored without one. It is stricter than Weaviate in two
//! places, which its messages say: an object of a class with vectorizer `none` needs a vector,
//! and img2vec-neural's `imageFields` must name `blob` properties.

mod document;
mod graphql;
mod objects;
mod schema;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Extension, Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use document::Document;
use schema::{Era, Mode, Rules};

/// How the fake presents itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeOptions {
    /// The Weaviate version to play, `1.22.13` or `1.39.0`: its OpenAPI document is the one
    /// checked, and its defaults are the ones filled in.
    pub version: String,
    /// When set, every request but `/v1/.well-known/*` needs `Authorization: Bearer <key>`.
    pub api_key: Option<String>,
    /// The enabled modules, such as `text2vec-transformers` or `img2vec-neural`.
    pub modules: Vec<String>,
}

impl Default for FakeOptions {
    fn default() -> FakeOptions {
        FakeOptions { version: "1.22.13".into(), api_key: None, modules: Vec::new() }
    }
}

/// One request the fake received.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    /// The HTTP method (`GET`, `POST`, ...).
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    /// The body, when it is JSON.
    pub body: Option<Value>,
}

/// A running fake Weaviate on 127.0.0.1, stopped when dropped.
pub struct FakeWeaviate {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub url: String,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeWeaviate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeWeaviate").field("url", &self.url).field("version", &self.shared.version).finish()
    }
}

impl Drop for FakeWeaviate {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Where the OpenAPI document of Weaviate `version` is kept in the repository.
pub fn weaviate_doc_path(version: &str) -> PathBuf {
    document::path(version)
}

impl FakeWeaviate {
    /// Starts the server on a free port of 127.0.0.1. Panics when there is no OpenAPI document
    /// for `options.version`.
    pub async fn start(options: FakeOptions) -> FakeWeaviate {
        let document = document::load(&options.version);
        let shared = Arc::new(Shared {
            document,
            era: Era::of(&options.version),
            version: options.version,
            api_key: options.api_key,
            modules: options.modules,
            state: Mutex::new(ServerState::default()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1");
        let url = format!("http://{}", listener.local_addr().expect("listener address"));
        let app = router(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeWeaviate { url, shared, server }
    }

    /// Every disagreement with the OpenAPI document seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.shared.state().violations.clone()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.shared.state().received.clone()
    }

    /// How many POST, PUT, PATCH and DELETE requests were received, answered or not.
    pub fn writes(&self) -> usize {
        self.shared.state().writes
    }

    /// The class `name` as `GET /v1/schema/{name}` would answer it.
    pub fn class(&self, name: &str) -> Option<Value> {
        self.shared.state().class(name).map(|c| c.definition.clone())
    }

    /// Stores `class` as if someone else had created it, with Weaviate's defaults filled in;
    /// replaces a class of the same name, keeping its objects. Panics when Weaviate would
    /// refuse the class.
    pub fn put_class(&self, class: Value) {
        let mut state = self.shared.state();
        let names = state.class_names();
        let rules = Rules { era: self.shared.era, modules: &self.shared.modules, classes: &names };
        let class = schema::normalize_class(&rules, &class, Mode::Create)
            .unwrap_or_else(|e| panic!("put_class: Weaviate would refuse this class: {e}"));
        match state.class_mut(class["class"].as_str().unwrap_or_default()) {
            Some(stored) => stored.definition = class,
            None => state.classes.push(StoredClass::new(class)),
        }
    }

    /// How many objects class `class` holds.
    pub fn object_count(&self, class: &str) -> usize {
        self.shared.state().class(class).map_or(0, |c| c.objects.len())
    }

    /// From now on, a batch object whose `properties[property]` equals `value` fails, with an
    /// error of its own in the 200 answer, as a shard that cannot write would.
    pub fn fail_objects_where(&self, property: &str, value: Value) {
        self.shared.state().failures.push((property.to_owned(), value));
    }

    /// From now on, answers `method path` (path with `/v1`, without query) with `status` and
    /// `body` instead of handling it. The answer is still checked against the document.
    pub fn set_status(&self, method: &str, path: &str, status: u16, body: Option<Value>) {
        let (method, path) = (method.to_ascii_uppercase(), path.split('?').next().unwrap_or(path).to_owned());
        let mut state = self.shared.state();
        state.overrides.retain(|o| !(o.method == method && o.path == path));
        state.overrides.push(Override { method, path, status, body });
    }

    /// Whether `/v1/.well-known/ready` answers 200 (ready) or 503.
    pub fn set_ready(&self, ready: bool) {
        self.shared.state().not_ready = !ready;
    }
}

/// What the handlers share.
struct Shared {
    document: Arc<Document>,
    era: Era,
    version: String,
    api_key: Option<String>,
    modules: Vec<String>,
    state: Mutex<ServerState>,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Default)]
struct ServerState {
    /// In creation order, as `GET /v1/schema` lists them.
    classes: Vec<StoredClass>,
    received: Vec<Received>,
    violations: Vec<String>,
    writes: usize,
    overrides: Vec<Override>,
    not_ready: bool,
    failures: Vec<(String, Value)>,
}

impl ServerState {
    fn class(&self, name: &str) -> Option<&StoredClass> {
        self.classes.iter().find(|c| c.name() == name)
    }

    fn class_mut(&mut self, name: &str) -> Option<&mut StoredClass> {
        self.classes.iter_mut().find(|c| c.name() == name)
    }

    fn class_names(&self) -> Vec<String> {
        self.classes.iter().map(|c| c.name().to_owned()).collect()
    }
}

/// An answer set with [`FakeWeaviate::set_status`].
struct Override {
    method: String,
    path: String,
    status: u16,
    body: Option<Value>,
}

/// A class with its objects.
pub(crate) struct StoredClass {
    /// As `GET /v1/schema/{className}` answers it.
    pub(crate) definition: Value,
    shards: Vec<String>,
    /// In insertion order; a replaced object keeps its place.
    pub(crate) objects: Vec<StoredObject>,
    /// Fixed by the first vector stored, as in Weaviate's HNSW index.
    pub(crate) dimensions: Option<usize>,
}

impl StoredClass {
    fn new(definition: Value) -> StoredClass {
        let count = definition["shardingConfig"]["desiredCount"].as_u64().unwrap_or(1).max(1);
        let shards = (0..count).map(|_| shard_name()).collect();
        StoredClass { definition, shards, objects: Vec::new(), dimensions: None }
    }

    pub(crate) fn name(&self) -> &str {
        self.definition["class"].as_str().unwrap_or_default()
    }

    pub(crate) fn property(&self, name: &str) -> Option<&Value> {
        self.definition["properties"].as_array()?.iter().find(|p| p["name"] == name)
    }

    /// The shard an object id belongs to: FNV-1a of the id, where Weaviate hashes it with murmur3
    /// onto virtual shards. Only which shard counts the object can differ from Weaviate.
    fn shard_of(&self, id: &str) -> usize {
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
        (hash % self.shards.len().max(1) as u64) as usize
    }
}

/// An object as stored.
pub(crate) struct StoredObject {
    pub(crate) id: String,
    pub(crate) properties: Map<String, Value>,
    pub(crate) vector: Option<Vec<f32>>,
    created: i64,
    updated: i64,
}

/// A shard name as Weaviate makes one: 12 random letters and digits.
fn shard_name() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    uuid::Uuid::new_v4().as_bytes()[..12].iter().map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect()
}

fn now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/.well-known/live", get(live))
        .route("/v1/.well-known/ready", get(ready))
        .route("/v1/meta", get(meta))
        .route("/v1/schema", get(get_schema).post(create_class))
        .route("/v1/schema/{class}", get(get_class).put(update_class).delete(delete_class))
        .route("/v1/schema/{class}/properties", post(add_property))
        .route("/v1/schema/{class}/shards", get(get_shards))
        .route("/v1/nodes", get(get_nodes))
        .route("/v1/nodes/{class}", get(get_class_nodes))
        .route("/v1/batch/objects", post(batch_objects))
        .route("/v1/objects/{class}/{id}", get(get_object).delete(delete_object))
        .route("/v1/graphql", post(graphql))
        .fallback(not_served)
        .method_not_allowed_fallback(not_served)
        .layer(middleware::from_fn_with_state(shared.clone(), check_exchange))
        .with_state(shared)
}

/// A request's body, parsed by [`check_exchange`] for the handlers.
#[derive(Clone)]
struct JsonBody(Option<Value>);

/// Marks the answer of a route the fake does not serve.
#[derive(Clone, Copy)]
struct NotServed;

/// Records each request, checks it and its answer against the document, and applies the API
/// key, the overrides and the answer to a malformed request.
async fn check_exchange(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let method = parts.method.as_str().to_owned();
    let path = parts.uri.path().to_owned();
    let target = parts.uri.path_and_query().map_or_else(|| path.clone(), |pq| pq.as_str().to_owned());
    let headers: BTreeMap<String, String> = parts
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
        .collect();
    let bytes = to_bytes(body, usize::MAX).await.unwrap_or_default();
    let (body, unreadable) = match serde_json::from_slice::<Value>(&bytes) {
        _ if bytes.is_empty() => (None, None),
        Ok(value) => (Some(value), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let authorized = match &shared.api_key {
        None => true,
        Some(key) => {
            path.starts_with("/v1/.well-known/") || headers.get("authorization") == Some(&format!("Bearer {key}"))
        }
    };
    let document = shared.document.clone();
    {
        let mut state = shared.state();
        state.received.push(Received {
            method: method.clone(),
            path: target.clone(),
            headers: headers.clone(),
            body: body.clone(),
        });
        if matches!(method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE") {
            state.writes += 1;
        }
    }
    let violate = |messages: Vec<String>| shared.state().violations.extend(messages);

    let Some(operation) = document.operation(&method, &path) else {
        violate(vec![format!("{method} {target}: no operation of the Weaviate {} document matches", document.version)]);
        return StatusCode::NOT_FOUND.into_response();
    };

    let answer = if !authorized {
        // The document gives 401 no body; Weaviate sends go-openapi's `{"code", "message"}`.
        StatusCode::UNAUTHORIZED.into_response()
    } else if let Some(problem) = unreadable {
        violate(vec![format!("{method} {target}: the request body is not JSON: {problem}")]);
        Reply::error(StatusCode::UNPROCESSABLE_ENTITY, format!("the request body is not JSON: {problem}"))
            .into_response()
    } else {
        let query = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).map(|q| q.0).unwrap_or_default();
        let check = document.check_request(&operation, &query, body.as_ref());
        violate(check.violations);
        let overridden = {
            let state = shared.state();
            let found = state.overrides.iter().rev().find(|o| o.method == method && o.path == path);
            found.map(|o| (o.status, o.body.clone()))
        };
        if let Some(rejection) = check.rejection {
            Reply::error(StatusCode::UNPROCESSABLE_ENTITY, rejection).into_response()
        } else if let Some((status, body)) = overridden {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            Reply { status, body }.into_response()
        } else {
            parts.extensions.insert(JsonBody(body));
            next.run(Request::from_parts(parts, Body::from(bytes))).await
        }
    };

    let (parts, answer_body) = answer.into_parts();
    if parts.extensions.get::<NotServed>().is_some() {
        violate(vec![format!(
            "{method} {target}: the operation {} of the {} document is not served by the fake",
            operation.name(&document),
            document.version
        )]);
        return Response::from_parts(parts, Body::empty());
    }
    let sent = to_bytes(answer_body, usize::MAX).await.unwrap_or_default();
    let sent_json = match serde_json::from_slice::<Value>(&sent) {
        _ if sent.is_empty() => None,
        Ok(value) => Some(value),
        Err(e) => {
            violate(vec![format!("{method} {target}: the answer is not JSON: {e}")]);
            None
        }
    };
    violate(document.check_response(&operation, parts.status.as_u16(), sent_json.as_ref()));
    Response::from_parts(parts, Body::from(sent))
}

/// A status with an optional JSON body.
struct Reply {
    status: StatusCode,
    body: Option<Value>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: StatusCode::OK, body: Some(body) }
    }

    fn empty(status: StatusCode) -> Reply {
        Reply { status, body: None }
    }

    /// Weaviate's `ErrorResponse`.
    fn error(status: StatusCode, message: impl Into<String>) -> Reply {
        Reply { status, body: Some(json!({"error": [{"message": message.into()}]})) }
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.body {
            Some(body) => (self.status, axum::Json(body)).into_response(),
            None => self.status.into_response(),
        }
    }
}

async fn not_served() -> Response {
    let mut response = StatusCode::NOT_FOUND.into_response();
    response.extensions_mut().insert(NotServed);
    response
}

async fn live() -> Reply {
    Reply::empty(StatusCode::OK)
}

async fn ready(State(shared): State<Arc<Shared>>) -> Reply {
    Reply::empty(if shared.state().not_ready { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK })
}

async fn meta(State(shared): State<Arc<Shared>>) -> Reply {
    let modules: Map<String, Value> = shared.modules.iter().map(|m| (m.clone(), json!({}))).collect();
    let mut meta = json!({"hostname": "http://[::]:8080", "version": shared.version, "modules": modules});
    if shared.era == Era::V139 {
        meta["grpcMaxMessageSize"] = json!(104_858_000);
    }
    Reply::ok(meta)
}

async fn get_schema(State(shared): State<Arc<Shared>>) -> Reply {
    let classes: Vec<Value> = shared.state().classes.iter().map(|c| c.definition.clone()).collect();
    Reply::ok(json!({"classes": classes}))
}

async fn create_class(State(shared): State<Arc<Shared>>, Extension(JsonBody(body)): Extension<JsonBody>) -> Reply {
    let body = body.unwrap_or_default();
    let mut state = shared.state();
    let name = schema::uppercase_first(body["class"].as_str().unwrap_or_default());
    if let Some(existing) = state.classes.iter().find(|c| c.name().eq_ignore_ascii_case(&name)) {
        let message = if existing.name() == name {
            format!("class name {name:?} already exists")
        } else {
            format!(
                "class name {name:?} already exists as a permutation of: {:?}. class names must be unique when lowercased",
                existing.name()
            )
        };
        return Reply::error(StatusCode::UNPROCESSABLE_ENTITY, message);
    }
    let names = state.class_names();
    let rules = Rules { era: shared.era, modules: &shared.modules, classes: &names };
    match schema::normalize_class(&rules, &body, Mode::Create) {
        Ok(class) => {
            state.classes.push(StoredClass::new(class.clone()));
            Reply::ok(class)
        }
        Err(message) => Reply::error(StatusCode::UNPROCESSABLE_ENTITY, message),
    }
}

async fn get_class(State(shared): State<Arc<Shared>>, Path(class): Path<String>) -> Reply {
    match shared.state().class(&class) {
        Some(stored) => Reply::ok(stored.definition.clone()),
        None => Reply::empty(StatusCode::NOT_FOUND),
    }
}

async fn update_class(
    State(shared): State<Arc<Shared>>,
    Path(class): Path<String>,
    Extension(JsonBody(body)): Extension<JsonBody>,
) -> Reply {
    let body = body.unwrap_or_default();
    let mut state = shared.state();
    let names = state.class_names();
    let Some(stored) = state.class_mut(&class) else {
        return Reply::error(StatusCode::NOT_FOUND, format!("class {class:?} not found"));
    };
    let rules = Rules { era: shared.era, modules: &shared.modules, classes: &names };
    let updated = schema::normalize_class(&rules, &body, Mode::Update)
        .and_then(|updated| schema::check_update(shared.era, &stored.definition, &updated).map(|()| updated));
    match updated {
        Ok(updated) => {
            stored.definition = updated.clone();
            Reply::ok(updated)
        }
        Err(message) => Reply::error(StatusCode::UNPROCESSABLE_ENTITY, message),
    }
}

async fn delete_class(State(shared): State<Arc<Shared>>, Path(class): Path<String>) -> Reply {
    shared.state().classes.retain(|c| c.name() != class);
    Reply::empty(StatusCode::OK)
}

async fn add_property(
    State(shared): State<Arc<Shared>>,
    Path(class): Path<String>,
    Extension(JsonBody(body)): Extension<JsonBody>,
) -> Reply {
    let body = body.unwrap_or_default();
    let mut state = shared.state();
    let names = state.class_names();
    let Some(stored) = state.class_mut(&class) else {
        return Reply::error(StatusCode::UNPROCESSABLE_ENTITY, "class not found");
    };
    let rules = Rules { era: shared.era, modules: &shared.modules, classes: &names };
    match schema::add_property(&rules, &mut stored.definition, &body) {
        Ok(property) => Reply::ok(property),
        Err(message) => Reply::error(StatusCode::UNPROCESSABLE_ENTITY, message),
    }
}

async fn get_shards(State(shared): State<Arc<Shared>>, Path(class): Path<String>) -> Reply {
    let state = shared.state();
    let Some(stored) = state.class(&class) else {
        return Reply::error(
            StatusCode::NOT_FOUND,
            format!("cannot get shards status for a non-existing index for {class}"),
        );
    };
    let shards: Vec<Value> =
        stored.shards.iter().map(|name| json!({"name": name, "status": "READY", "vectorQueueSize": 0})).collect();
    Reply::ok(Value::Array(shards))
}

async fn get_nodes(State(shared): State<Arc<Shared>>, Query(query): Query<BTreeMap<String, String>>) -> Reply {
    let verbose = query.get("output").is_some_and(|o| o == "verbose");
    Reply::ok(json!({"nodes": [node_status(&shared, None, verbose)]}))
}

async fn get_class_nodes(
    State(shared): State<Arc<Shared>>,
    Path(class): Path<String>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Reply {
    if shared.state().class(&class).is_none() {
        return Reply::error(StatusCode::NOT_FOUND, format!("class {class:?} not found"));
    }
    let verbose = query.get("output").is_some_and(|o| o == "verbose");
    Reply::ok(json!({"nodes": [node_status(&shared, Some(&class), verbose)]}))
}

/// The one node's status. 1.22 always lists shards and counts; newer versions only with
/// `?output=verbose`. Go writes an empty shard list as `null`.
fn node_status(shared: &Shared, class: Option<&str>, verbose: bool) -> Value {
    let state = shared.state();
    let mut shards = Vec::new();
    let mut objects = 0;
    for stored in state.classes.iter().filter(|c| class.is_none_or(|name| c.name() == name)) {
        for (index, name) in stored.shards.iter().enumerate() {
            let count = stored.objects.iter().filter(|o| stored.shard_of(&o.id) == index).count();
            objects += count;
            let mut shard = json!({
                "name": name,
                "class": stored.name(),
                "objectCount": count,
                "vectorIndexingStatus": "READY",
                "vectorQueueLength": 0,
            });
            if shared.era == Era::V139 {
                let extra = json!({"compressed": false, "loaded": true, "replicationFactor": 1, "numberOfReplicas": 1});
                shard
                    .as_object_mut()
                    .into_iter()
                    .for_each(|s| s.extend(extra.as_object().cloned().unwrap_or_default()));
            }
            shards.push(shard);
        }
    }
    let shard_count = shards.len();
    let shards = if shards.is_empty() { Value::Null } else { Value::Array(shards) };
    let mut node = json!({
        "name": "node1",
        "status": "HEALTHY",
        "version": shared.version,
        "gitHash": "0000000",
        "batchStats": {"queueLength": 0, "ratePerSecond": 0},
    });
    let with_details = shared.era == Era::V122 || verbose;
    if with_details {
        node["stats"] = json!({"shardCount": shard_count, "objectCount": objects});
        node["shards"] = shards;
    } else {
        node["shards"] = Value::Null;
    }
    if shared.era == Era::V139 {
        node["operationalMode"] = json!("ReadWrite");
    }
    node
}

async fn batch_objects(State(shared): State<Arc<Shared>>, Extension(JsonBody(body)): Extension<JsonBody>) -> Reply {
    let body = body.unwrap_or_default();
    let objects = body["objects"].as_array().cloned().unwrap_or_default();
    if objects.is_empty() {
        return Reply::error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid param 'objects': cannot be empty, need at least one object for batching",
        );
    }
    let mut state = shared.state();
    let answers = objects.iter().map(|object| batch_object(&mut state, object)).collect();
    Reply::ok(Value::Array(answers))
}

/// Stores one object of a batch; returns its entry of the answer.
fn batch_object(state: &mut ServerState, object: &Value) -> Value {
    let class_name = object["class"].as_str().unwrap_or_default().to_owned();
    let id = object["id"].as_str().map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
    let given_properties = object["properties"].as_object().cloned().unwrap_or_default();
    let vector = objects::vector_of(&object["vector"]).filter(|v| !v.is_empty());
    let now = now_millis();
    let failures = state.failures.clone();

    let stored = (|| -> Result<Map<String, Value>, String> {
        let stored_class = state
            .class_mut(&schema::uppercase_first(&class_name))
            .ok_or_else(|| format!("class '{class_name}' not present in schema"))?;
        if object["tenant"].as_str().is_some_and(|t| !t.is_empty()) {
            return Err(format!(
                "class {} has multi-tenancy disabled, but request was with tenant",
                stored_class.name()
            ));
        }
        let properties = objects::check_properties(&stored_class.definition, &given_properties)?;
        match (&vector, stored_class.dimensions) {
            (None, _) if stored_class.definition["vectorizer"] == "none" => {
                return Err(format!(
                    "class '{}' has vectorizer \"none\" and the object has no vector (the fake Weaviate requires one; \
                     Weaviate stores such an object without a vector)",
                    stored_class.name()
                ));
            }
            (Some(v), Some(dimensions)) if v.len() != dimensions => {
                return Err(format!(
                    "insert to vector index: new node has a vector with length {}. Existing nodes have vectors with \
                     length {dimensions}",
                    v.len()
                ));
            }
            _ => {}
        }
        if let Some((property, value)) = failures.iter().find(|(p, v)| properties.get(p) == Some(v)) {
            return Err(format!(
                "put object: write failed (failure injected for objects whose {property:?} is {value})"
            ));
        }
        if let Some(v) = &vector {
            stored_class.dimensions.get_or_insert(v.len());
        }
        let stored = StoredObject {
            id: id.clone(),
            properties: properties.clone(),
            vector: vector.clone(),
            created: now,
            updated: now,
        };
        match stored_class.objects.iter_mut().find(|o| o.id == id) {
            Some(existing) => *existing = stored,
            None => stored_class.objects.push(stored),
        }
        Ok(properties)
    })();

    let mut answer = json!({
        "class": class_name,
        "id": id,
        "creationTimeUnix": now,
        "lastUpdateTimeUnix": now,
    });
    if let Some(v) = &vector {
        answer["vector"] = Value::Array(v.iter().copied().map(objects::float32_json).collect());
    }
    match stored {
        Ok(properties) => {
            answer["properties"] = Value::Object(properties);
            answer["result"] = json!({"status": "SUCCESS"});
        }
        Err(message) => {
            answer["properties"] = Value::Object(given_properties);
            answer["result"] = json!({"status": "FAILED", "errors": {"error": [{"message": message}]}});
        }
    }
    answer
}

async fn get_object(
    State(shared): State<Arc<Shared>>,
    Path((class, id)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
) -> Reply {
    let include: Vec<&str> = query.get("include").map(|i| i.split(',').map(str::trim).collect()).unwrap_or_default();
    let known = ["vector", "classification", "interpretation", "featureProjection"];
    if let Some(unknown) = include.iter().find(|i| !known.contains(i)) {
        return Reply::error(StatusCode::BAD_REQUEST, format!("unrecognized property '{unknown}' in ?include list"));
    }
    let state = shared.state();
    let Some(stored) = state.class(&schema::uppercase_first(&class)) else {
        return Reply::empty(StatusCode::NOT_FOUND);
    };
    let Some(object) = stored.objects.iter().find(|o| o.id == id) else {
        return Reply::empty(StatusCode::NOT_FOUND);
    };
    let mut answer = json!({
        "class": stored.name(),
        "id": object.id,
        "properties": object.properties,
        "creationTimeUnix": object.created,
        "lastUpdateTimeUnix": object.updated,
    });
    if include.contains(&"vector")
        && let Some(vector) = &object.vector
    {
        answer["vector"] = Value::Array(vector.iter().copied().map(objects::float32_json).collect());
    }
    Reply::ok(answer)
}

async fn delete_object(State(shared): State<Arc<Shared>>, Path((class, id)): Path<(String, String)>) -> Reply {
    let mut state = shared.state();
    let Some(stored) = state.class_mut(&schema::uppercase_first(&class)) else {
        return Reply::empty(StatusCode::NOT_FOUND);
    };
    let before = stored.objects.len();
    stored.objects.retain(|o| o.id != id);
    Reply::empty(if stored.objects.len() < before { StatusCode::NO_CONTENT } else { StatusCode::NOT_FOUND })
}

async fn graphql(State(shared): State<Arc<Shared>>, Extension(JsonBody(body)): Extension<JsonBody>) -> Reply {
    let body = body.unwrap_or_default();
    let Some(query) = body["query"].as_str().filter(|q| !q.trim().is_empty()) else {
        return Reply::error(StatusCode::UNPROCESSABLE_ENTITY, "query cannot be empty");
    };
    let state = shared.state();
    Reply::ok(graphql::execute(query, &state.classes))
}
