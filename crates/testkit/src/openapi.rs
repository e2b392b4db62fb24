//! A fake HTTP server that answers from canned responses and checks both directions against an
//! OpenAPI (Swagger 2.0) document: each request must match an operation of the document, with a
//! body that fits its schema; each canned response must fit the schema the document gives for its
//! status. Used where no real server can run here (Weaviate).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A loaded OpenAPI 2.0 document.
#[derive(Debug, Clone)]
pub struct Spec {
    doc: Value,
    base_path: String,
}

impl Spec {
    pub fn load(path: &Path) -> Spec {
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let doc: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        assert_eq!(doc["swagger"], "2.0", "{} is not a Swagger 2.0 document", path.display());
        let base_path = doc["basePath"].as_str().unwrap_or("").trim_end_matches('/').to_owned();
        Spec { doc, base_path }
    }

    pub fn version(&self) -> &str {
        self.doc["info"]["version"].as_str().unwrap_or("?")
    }

    /// The operation for `method` on the concrete `path` (with the base path), and the template
    /// it matched.
    pub fn operation(&self, method: &str, path: &str) -> Option<(String, &Value)> {
        let path = path.split('?').next().unwrap_or(path);
        let relative = path.strip_prefix(&self.base_path)?;
        let paths = self.doc["paths"].as_object()?;
        // Literal templates win over ones with parameters, as in most routers.
        let mut candidates: Vec<(&String, &Value)> =
            paths.iter().filter(|(t, _)| template_matches(t, relative)).collect();
        candidates.sort_by_key(|(t, _)| t.matches('{').count());
        let (template, item) =
            candidates.into_iter().find(|(_, item)| item.get(method.to_ascii_lowercase()).is_some())?;
        Some((template.clone(), &item[method.to_ascii_lowercase()]))
    }

    /// Checks a request body against the operation's `in: body` parameter.
    pub fn check_request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(), String> {
        let (template, op) = self
            .operation(method, path)
            .ok_or_else(|| format!("{method} {path}: no such operation in the {} document", self.version()))?;
        let body_param = op["parameters"].as_array().and_then(|ps| ps.iter().find(|p| p["in"] == "body"));
        match (body_param, body) {
            (Some(param), Some(body)) => {
                self.check(&param["schema"], body, "body").map_err(|e| format!("{method} {template}: request {e}"))
            }
            (Some(param), None) if param["required"] == true => {
                Err(format!("{method} {template}: the request body is required"))
            }
            (None, Some(_)) => Err(format!("{method} {template}: takes no request body")),
            _ => Ok(()),
        }
    }

    /// Checks a response against what the operation documents for `status`.
    pub fn check_response(&self, method: &str, path: &str, status: u16, body: Option<&Value>) -> Result<(), String> {
        let (template, op) =
            self.operation(method, path).ok_or_else(|| format!("{method} {path}: no such operation"))?;
        let responses = &op["responses"];
        let response = responses.get(status.to_string()).or_else(|| responses.get("default"));
        let Some(response) = response else {
            return Err(format!("{method} {template}: status {status} is not documented"));
        };
        match (response.get("schema"), body) {
            (Some(schema), Some(body)) => {
                self.check(schema, body, "body").map_err(|e| format!("{method} {template} {status}: response {e}"))
            }
            (Some(_), None) => Err(format!("{method} {template} {status}: the document gives a body, none was sent")),
            (None, Some(_)) => Err(format!("{method} {template} {status}: the document gives no body")),
            (None, None) => Ok(()),
        }
    }

    /// Validates `value` against `schema` (the subset of JSON Schema that Swagger 2.0 uses).
    pub fn check(&self, schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        if let Some(reference) = schema["$ref"].as_str() {
            let name = reference
                .strip_prefix("#/definitions/")
                .ok_or_else(|| format!("{at}: unsupported $ref {reference}"))?;
            let target = self.doc["definitions"].get(name).ok_or_else(|| format!("{at}: unknown definition {name}"))?;
            return self.check(target, value, at);
        }
        if let Some(all) = schema["allOf"].as_array() {
            for part in all {
                self.check(part, value, at)?;
            }
        }
        if value.is_null() && schema["x-nullable"] == true {
            return Ok(());
        }
        if let Some(options) = schema["enum"].as_array()
            && !options.contains(value)
        {
            return Err(format!("{at}: {value} is not one of {options:?}"));
        }
        let ty = schema["type"].as_str();
        let type_ok = match ty {
            None => true,
            Some("object") => value.is_object(),
            Some("array") => value.is_array(),
            Some("string") => value.is_string(),
            Some("integer") => value.is_i64() || value.is_u64(),
            Some("number") => value.is_number(),
            Some("boolean") => value.is_boolean(),
            Some(other) => return Err(format!("{at}: unsupported schema type {other}")),
        };
        if !type_ok {
            return Err(format!("{at}: expected {}, found {value}", ty.unwrap_or("?")));
        }
        if let Some(object) = value.as_object() {
            let properties = schema["properties"].as_object();
            if let Some(required) = schema["required"].as_array() {
                for name in required.iter().filter_map(Value::as_str) {
                    if !object.contains_key(name) {
                        return Err(format!("{at}: required property {name:?} is missing"));
                    }
                }
            }
            for (key, item) in object {
                match properties.and_then(|p| p.get(key)) {
                    Some(property) => self.check(property, item, &format!("{at}.{key}"))?,
                    None => match &schema["additionalProperties"] {
                        Value::Bool(false) => {
                            return Err(format!("{at}: unknown property {key:?}"));
                        }
                        extra @ Value::Object(_) => self.check(extra, item, &format!("{at}.{key}"))?,
                        _ if properties.is_some()
                            && schema["additionalProperties"].is_null()
                            && ty == Some("object") =>
                        {
                            return Err(format!("{at}: property {key:?} is not in the document"));
                        }
                        _ => {}
                    },
                }
            }
        }
        if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
            for (i, item) in array.iter().enumerate() {
                self.check(items, item, &format!("{at}[{i}]"))?;
            }
        }
        Ok(())
    }
}

fn template_matches(template: &str, path: &str) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// Weaviate's official OpenAPI document of `version` (1.22.13 or 1.39.0), kept in the
/// repository under `reference/weaviate/`.
pub fn weaviate_spec(version: &str) -> Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../reference/weaviate/openapi-v{version}.json"));
    Spec::load(&path)
}

/// One request the fake server received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Header names in lower case.
    pub headers: BTreeMap<String, String>,
    pub body: Option<Value>,
}

/// A canned answer: status and JSON body.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Option<Value>,
}

type Route = (String, String, Answer);

/// The fake server. Routes are `(METHOD, path)`; anything else answers 404 and counts as a
/// violation.
#[derive(Debug)]
pub struct FakeServer {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
    violations: Arc<Mutex<Vec<String>>>,
    routes: Arc<Mutex<Vec<Route>>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeServer {
    pub async fn start(spec: Spec) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let violations = Arc::new(Mutex::new(Vec::new()));
        let routes: Arc<Mutex<Vec<Route>>> = Arc::new(Mutex::new(Vec::new()));
        let spec = Arc::new(spec);
        let (r, v, ro) = (received.clone(), violations.clone(), routes.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (spec, r, v, ro) = (spec.clone(), r.clone(), v.clone(), ro.clone());
                tokio::spawn(async move {
                    let _ = serve(stream, &spec, &r, &v, &ro).await;
                });
            }
        });
        FakeServer { url, received, violations, routes, task }
    }

    /// Answers `method path` with `status` and `body`. The answer is checked against the
    /// document when it is sent.
    pub fn route(&self, method: &str, path: &str, status: u16, body: Option<Value>) {
        self.routes.lock().unwrap().push((method.to_owned(), path.to_owned(), Answer { status, body }));
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Every disagreement with the document seen so far.
    pub fn violations(&self) -> Vec<String> {
        self.violations.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    spec: &Spec,
    received: &Mutex<Vec<Received>>,
    violations: &Mutex<Vec<String>>,
    routes: &Mutex<Vec<Route>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned());
        let mut headers = BTreeMap::new();
        loop {
            let mut header = String::new();
            reader.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        let mut raw = vec![0u8; length];
        reader.read_exact(&mut raw).await?;
        let body = if raw.is_empty() {
            None
        } else {
            match serde_json::from_slice(&raw) {
                Ok(json) => Some(json),
                Err(e) => {
                    violations.lock().unwrap().push(format!("{method} {path}: request body is not JSON: {e}"));
                    None
                }
            }
        };
        if let Err(e) = spec.check_request(&method, &path, body.as_ref()) {
            violations.lock().unwrap().push(e);
        }
        received.lock().unwrap().push(Received { method: method.clone(), path: path.clone(), headers, body });
        let bare = path.split('?').next().unwrap_or(&path).to_owned();
        let answer =
            routes.lock().unwrap().iter().rev().find(|(m, p, _)| *m == method && *p == bare).map(|(_, _, a)| a.clone());
        let answer = answer.unwrap_or_else(|| {
            violations.lock().unwrap().push(format!("{method} {path}: no canned answer"));
            Answer { status: 404, body: None }
        });
        if answer.status != 404
            && let Err(e) = spec.check_response(&method, &path, answer.status, answer.body.as_ref())
        {
            violations.lock().unwrap().push(e);
        }
        let payload = answer.body.map(|b| b.to_string()).unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.status,
            payload.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(payload.as_bytes()).await?;
        write.flush().await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> Spec {
        weaviate_spec("1.22.13")
    }

    #[test]
    fn validator_accepts_and_rejects() {
        let spec = spec();
        assert!(
            spec.check_response("GET", "/v1/meta", 200, Some(&json!({"version": "1.22.13", "modules": {}}))).is_ok()
        );
        let err = spec.check_response("GET", "/v1/meta", 200, Some(&json!({"version": 122}))).unwrap_err();
        assert!(err.contains("version"), "{err}");
        assert!(spec.check_response("GET", "/v1/meta", 418, None).is_err());
        assert!(spec.operation("GET", "/v1/nonexistent").is_none());
        assert!(spec.operation("DELETE", "/v1/schema/Document").is_some());
        assert!(spec.check_request("POST", "/v1/schema", Some(&json!({"class": "Document"}))).is_ok());
        assert!(spec.check_request("POST", "/v1/schema", Some(&json!({"class": 5}))).is_err());
    }
}
