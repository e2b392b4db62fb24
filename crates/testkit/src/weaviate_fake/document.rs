//! One of Weaviate's OpenAPI (Swagger 2.0) documents, and the checks of requests and responses
//! against it.
//!
//! Swagger 2.0 schemas are JSON Schema draft 4 with extensions, so the checks run the
//! `jsonschema` crate in draft 4 mode on schemas prepared from the document:
//!
//! - every schema is validated inside a root that embeds the document's `definitions`, so that
//!   `$ref: #/definitions/X` resolves locally;
//! - `x-nullable: true` also admits `null`, as in go-swagger;
//! - an optional property of array or object type also admits `null`: Go writes a nil slice or
//!   map that way, and Weaviate's answers contain such values (`stopwords.additions`, a node's
//!   `shards`);
//! - an object schema that lists `properties` and says nothing of `additionalProperties` is
//!   closed: a field the document does not name is reported. JSON Schema would admit it, but
//!   Weaviate silently drops it, which is what the checks are there to catch (a 1.39 field sent to
//!   1.22, a misspelt field, `{"classes": [...]}` sent where one class is expected);
//! - `allOf` lists of plain object schemas are merged into one schema first, so that closing
//!   the parts does not make the whole unsatisfiable;
//! - the `uuid` format is checked as go-openapi's `strfmt` does; other formats Swagger adds
//!   (`int64`, `float`, `url`, ...) are annotations.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value, json};

/// A loaded document with its prepared definitions and a cache of compiled validators.
pub(crate) struct Document {
    pub(crate) version: String,
    raw: Value,
    base_path: String,
    definitions: Value,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// An operation of the document that a request matched.
#[derive(Clone, Debug)]
pub(crate) struct Operation {
    /// Lower-case HTTP method, as the document spells it.
    pub(crate) method: String,
    /// The path template without the base path, such as `/schema/{className}`.
    pub(crate) template: String,
}

impl Operation {
    /// `POST /v1/schema`-style name for messages.
    pub(crate) fn name(&self, document: &Document) -> String {
        format!("{} {}{}", self.method.to_ascii_uppercase(), document.base_path, self.template)
    }
}

/// What the document says of a request.
#[derive(Debug, Default)]
pub(crate) struct RequestCheck {
    pub(crate) violations: Vec<String>,
    /// Set when the request is malformed (its body or a parameter breaks the document): the
    /// server answers 422 with this message instead of handling it.
    pub(crate) rejection: Option<String>,
}

/// The document of `version` (`reference/weaviate/openapi-v{version}.json`), loaded once per
/// process.
pub(crate) fn load(version: &str) -> Arc<Document> {
    static LOADED: OnceLock<Mutex<HashMap<String, Arc<Document>>>> = OnceLock::new();
    let mut loaded = LOADED.get_or_init(Default::default).lock().unwrap_or_else(|e| e.into_inner());
    loaded.entry(version.to_owned()).or_insert_with(|| Arc::new(Document::read(version))).clone()
}

/// Where the document of `version` is kept in the repository.
pub(crate) fn path(version: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../reference/weaviate").join(format!("openapi-v{version}.json"))
}

impl Document {
    fn read(version: &str) -> Document {
        let path = path(version);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!("no Weaviate OpenAPI document for version {version} at {}: {e}", path.display())
        });
        let raw: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        assert_eq!(raw["swagger"], "2.0", "{} is not a Swagger 2.0 document", path.display());
        let base_path = raw["basePath"].as_str().unwrap_or("").trim_end_matches('/').to_owned();
        let raw_definitions = raw["definitions"].as_object().cloned().unwrap_or_default();
        let definitions: Map<String, Value> =
            raw_definitions.iter().map(|(name, schema)| (name.clone(), prepare(schema, &raw_definitions))).collect();
        Document {
            version: version.to_owned(),
            raw,
            base_path,
            definitions: Value::Object(definitions),
            validators: Mutex::new(HashMap::new()),
        }
    }

    /// The operation that `method` on the concrete `path` (base path included, no query) is,
    /// if the document has one. Literal segments win over parameters, as in go-swagger's router.
    pub(crate) fn operation(&self, method: &str, path: &str) -> Option<Operation> {
        let relative = path.strip_prefix(&self.base_path)?;
        let relative = if relative.is_empty() { "/" } else { relative };
        let method = method.to_ascii_lowercase();
        let mut candidates: Vec<&String> = self.raw["paths"]
            .as_object()?
            .iter()
            .filter(|(template, item)| template_matches(template, relative) && item.get(&method).is_some())
            .map(|(template, _)| template)
            .collect();
        candidates.sort_by_key(|template| template.matches('{').count());
        candidates.first().map(|template| Operation { method, template: (*template).clone() })
    }

    fn operation_value(&self, operation: &Operation) -> &Value {
        &self.raw["paths"][&operation.template][&operation.method]
    }

    /// The operation's parameters, those of its path item included, with `$ref`s resolved.
    fn parameters(&self, operation: &Operation) -> Vec<&Value> {
        let item = &self.raw["paths"][&operation.template];
        let own = self.operation_value(operation)["parameters"].as_array().into_iter().flatten();
        let shared = item["parameters"].as_array().into_iter().flatten();
        own.chain(shared)
            .map(|parameter| match parameter["$ref"].as_str().and_then(|r| r.strip_prefix("#/parameters/")) {
                Some(name) => &self.raw["parameters"][name],
                None => parameter,
            })
            .collect()
    }

    /// Checks a request's query parameters and body.
    pub(crate) fn check_request(
        &self,
        operation: &Operation,
        query: &[(String, String)],
        body: Option<&Value>,
    ) -> RequestCheck {
        let name = operation.name(self);
        let mut check = RequestCheck::default();
        let parameters = self.parameters(operation);
        for parameter in parameters.iter().filter(|p| p["in"] == "query") {
            let Some(parameter_name) = parameter["name"].as_str() else { continue };
            let given: Vec<&str> = query.iter().filter(|(n, _)| n == parameter_name).map(|(_, v)| v.as_str()).collect();
            if given.is_empty() && parameter["required"] == true {
                let message = format!("query parameter {parameter_name:?} is required");
                check.violations.push(format!("{name}: {message} (the {} document)", self.version));
                check.rejection.get_or_insert(message);
            }
            for value in given {
                if let Err(problem) = check_parameter_value(parameter, value) {
                    let message = format!("query parameter {parameter_name}={value:?}: {problem}");
                    check.violations.push(format!("{name}: {message} (the {} document)", self.version));
                    check.rejection.get_or_insert(message);
                }
            }
        }
        // Query parameters the document does not declare are ignored, as go-swagger does.

        let body_parameter = parameters.iter().find(|p| p["in"] == "body");
        match (body_parameter, body) {
            (Some(parameter), Some(body)) => {
                let errors = self.validate(&format!("{name} request"), &parameter["schema"], body);
                if let Some(first) = errors.first() {
                    check
                        .rejection
                        .get_or_insert_with(|| format!("the request body does not fit the document: {first}"));
                }
                check.violations.extend(
                    errors.into_iter().map(|e| format!("{name}: request body: {e} (the {} document)", self.version)),
                );
            }
            (Some(parameter), None) if parameter["required"] == true => {
                check.violations.push(format!("{name}: the request body is required (the {} document)", self.version));
                check.rejection.get_or_insert_with(|| "the request body is required".to_owned());
            }
            (None, Some(_)) => {
                check.violations.push(format!("{name}: takes no request body (the {} document)", self.version));
            }
            _ => {}
        }
        check
    }

    /// Checks a response against what the operation documents for `status`.
    pub(crate) fn check_response(&self, operation: &Operation, status: u16, body: Option<&Value>) -> Vec<String> {
        let name = operation.name(self);
        let responses = &self.operation_value(operation)["responses"];
        let Some(response) = responses.get(status.to_string()).or_else(|| responses.get("default")) else {
            return vec![format!("{name}: status {status} is not documented (the {} document)", self.version)];
        };
        match (response.get("schema"), body) {
            (Some(schema), Some(body)) => self
                .validate(&format!("{name} {status}"), schema, body)
                .into_iter()
                .map(|e| format!("{name} {status}: response body: {e} (the {} document)", self.version))
                .collect(),
            (Some(_), None) => {
                vec![format!(
                    "{name} {status}: the document gives a body, none was sent (the {} document)",
                    self.version
                )]
            }
            (None, Some(_)) => {
                vec![format!(
                    "{name} {status}: the document gives no body, one was sent (the {} document)",
                    self.version
                )]
            }
            (None, None) => Vec::new(),
        }
    }

    /// Validates `value` against `schema`, a schema of this document; `key` names the schema for
    /// the validator cache. Returns one message per error, with where in `value` it is.
    pub(crate) fn validate(&self, key: &str, schema: &Value, value: &Value) -> Vec<String> {
        let validator = {
            let mut cache = self.validators.lock().unwrap_or_else(|e| e.into_inner());
            match cache.get(key) {
                Some(validator) => validator.clone(),
                None => {
                    let validator = match self.compile(schema) {
                        Ok(validator) => Arc::new(validator),
                        Err(e) => return vec![format!("the document's schema does not compile: {e}")],
                    };
                    cache.insert(key.to_owned(), validator.clone());
                    validator
                }
            }
        };
        validator
            .iter_errors(value)
            .map(|error| {
                let at = error.instance_path().to_string();
                if at.is_empty() { error.to_string() } else { format!("at {at}: {error}") }
            })
            .collect()
    }

    fn compile(&self, schema: &Value) -> Result<jsonschema::Validator, String> {
        let raw_definitions = self.raw["definitions"].as_object().cloned().unwrap_or_default();
        let root = json!({
            "definitions": self.definitions,
            "allOf": [prepare(schema, &raw_definitions)],
        });
        jsonschema::draft4::options()
            .should_validate_formats(true)
            .with_format("uuid", is_uuid)
            .build(&root)
            .map_err(|e| e.to_string())
    }
}

/// Whether `text` is a UUID as go-openapi's `strfmt` (and so Weaviate) accepts one: 32 hex
/// digits in 8-4-4-4-12 groups, either case.
pub(crate) fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text
            .char_indices()
            .all(|(i, c)| if matches!(i, 8 | 13 | 18 | 23) { c == '-' } else { c.is_ascii_hexdigit() })
}

fn template_matches(template: &str, path: &str) -> bool {
    let template: Vec<&str> = template.trim_matches('/').split('/').collect();
    let path: Vec<&str> = path.trim_matches('/').split('/').collect();
    template.len() == path.len()
        && template.iter().zip(&path).all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// Checks a query parameter's value against its declared `type` and `enum`.
fn check_parameter_value(parameter: &Value, value: &str) -> Result<(), String> {
    let type_ok = match parameter["type"].as_str() {
        Some("integer") => value.parse::<i64>().is_ok(),
        Some("number") => value.parse::<f64>().is_ok(),
        Some("boolean") => matches!(value, "true" | "false"),
        _ => true,
    };
    if !type_ok {
        return Err(format!("not of type {}", parameter["type"]));
    }
    if let Some(options) = parameter["enum"].as_array()
        && !options.iter().any(|o| o.as_str() == Some(value))
    {
        return Err(format!("not one of {}", Value::Array(options.clone())));
    }
    Ok(())
}

/// Prepares a Swagger schema for draft 4 validation (see the module documentation).
/// `definitions` are the document's definitions as written, used to merge `allOf` parts.
fn prepare(schema: &Value, definitions: &Map<String, Value>) -> Value {
    let Value::Object(original) = schema else {
        return schema.clone();
    };
    let mut map = original.clone();

    if let Some(Value::Array(parts)) = map.get("allOf")
        && let Some(merged) = merge_all_of(parts, definitions)
    {
        map.remove("allOf");
        for (key, value) in merged {
            map.insert(key, value);
        }
    }

    // Sub-schemas first.
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for property in properties.values_mut() {
            *property = prepare(property, definitions);
        }
    }
    for keyword in ["items", "additionalProperties", "not"] {
        if let Some(sub @ Value::Object(_)) = map.get_mut(keyword) {
            *sub = prepare(sub, definitions);
        }
    }
    if let Some(Value::Array(items)) = map.get_mut("items") {
        for item in items {
            *item = prepare(item, definitions);
        }
    }
    for keyword in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(parts)) = map.get_mut(keyword) {
            for part in parts {
                *part = prepare(part, definitions);
            }
        }
    }

    // Optional array and object properties may be null (Go's nil slices and maps).
    let required: Vec<String> = map
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name) && is_collection(property, definitions) {
                *property = nullable(std::mem::take(property));
            }
        }
    }

    if map.contains_key("properties") && !map.contains_key("additionalProperties") {
        map.insert("additionalProperties".into(), Value::Bool(false));
    }

    let schema = Value::Object(map);
    if schema["x-nullable"] == true { nullable(schema) } else { schema }
}

/// Merges an `allOf` of plain object schemas (or `$ref`s to them) into one object schema's
/// `type`, `properties` and `required`; `None` when a part is anything else.
fn merge_all_of(parts: &[Value], definitions: &Map<String, Value>) -> Option<Map<String, Value>> {
    let mut properties = Map::new();
    let mut required: Vec<Value> = Vec::new();
    for part in parts {
        let part = match part["$ref"].as_str() {
            Some(reference) => definitions.get(reference.strip_prefix("#/definitions/")?)?,
            None => part,
        };
        let part = part.as_object()?;
        let plain = part.keys().all(|k| {
            matches!(k.as_str(), "type" | "properties" | "required" | "description" | "title" | "format")
                || k.starts_with("x-")
        });
        if !plain || part.get("type").is_some_and(|t| t != "object") {
            return None;
        }
        if let Some(Value::Object(more)) = part.get("properties") {
            properties.extend(more.clone());
        }
        if let Some(Value::Array(more)) = part.get("required") {
            required.extend(more.iter().cloned());
        }
    }
    let mut merged = Map::new();
    merged.insert("type".into(), "object".into());
    merged.insert("properties".into(), Value::Object(properties));
    if !required.is_empty() {
        merged.insert("required".into(), Value::Array(required));
    }
    Some(merged)
}

/// Whether `schema` (or the definition it refers to) is of array or object type.
fn is_collection(schema: &Value, definitions: &Map<String, Value>) -> bool {
    let target = match schema["$ref"].as_str().and_then(|r| r.strip_prefix("#/definitions/")) {
        Some(name) => definitions.get(name).unwrap_or(&Value::Null),
        None => schema,
    };
    matches!(target["type"].as_str(), Some("array" | "object"))
}

/// `schema`, admitting `null` as well.
fn nullable(schema: Value) -> Value {
    let Value::Object(mut map) = schema else {
        return schema;
    };
    if map.contains_key("$ref") || map.contains_key("anyOf") && !map.contains_key("type") {
        return json!({"anyOf": [{"type": "null"}, Value::Object(map)]});
    }
    match map.get_mut("type") {
        Some(Value::String(single)) => {
            let single = std::mem::take(single);
            map.insert("type".into(), json!([single, "null"]));
        }
        Some(Value::Array(types)) if !types.contains(&json!("null")) => types.push(json!("null")),
        _ => {}
    }
    if let Some(Value::Array(options)) = map.get_mut("enum")
        && !options.contains(&Value::Null)
    {
        options.push(Value::Null);
    }
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERSIONS: [&str; 2] = ["1.22.13", "1.39.0"];

    #[test]
    fn every_schema_of_both_documents_compiles() {
        for version in VERSIONS {
            let document = load(version);
            let raw = document.raw.clone();
            for (template, item) in raw["paths"].as_object().unwrap() {
                for (method, operation) in item.as_object().unwrap() {
                    let Some(operation) = operation.as_object() else { continue };
                    let op = Operation { method: method.clone(), template: template.clone() };
                    for parameter in document.parameters(&op) {
                        if parameter["in"] == "body" {
                            document
                                .compile(&parameter["schema"])
                                .unwrap_or_else(|e| panic!("{version} {template}: {e}"));
                        }
                    }
                    for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                        if let Some(schema) = response.get("schema") {
                            document
                                .compile(schema)
                                .unwrap_or_else(|e| panic!("{version} {method} {template} {status}: {e}"));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn operations_are_found_by_concrete_path() {
        let document = load("1.22.13");
        let op = document.operation("DELETE", "/v1/schema/Document").unwrap();
        assert_eq!(op.template, "/schema/{className}");
        assert_eq!(document.operation("GET", "/v1/schema/cluster-status").unwrap().template, "/schema/cluster-status");
        assert!(document.operation("GET", "/v1/nonexistent").is_none());
        assert!(document.operation("PATCH", "/v1/schema").is_none());
        assert!(document.operation("GET", "/v2/schema").is_none());
    }

    #[test]
    fn swagger_extensions_and_formats_do_not_fail_valid_values() {
        for version in VERSIONS {
            let document = load(version);
            let meta = json!({"hostname": "http://[::]:8080", "version": version, "modules": {}});
            let op = document.operation("GET", "/v1/meta").unwrap();
            assert_eq!(document.check_response(&op, 200, Some(&meta)), Vec::<String>::new());
            // x-nullable booleans, null stopword lists.
            let class = json!({
                "class": "A",
                "properties": [{"name": "n", "dataType": ["int"], "indexSearchable": null}],
                "invertedIndexConfig": {"stopwords": {"preset": "en", "additions": null, "removals": null}}
            });
            let op = document.operation("POST", "/v1/schema").unwrap();
            assert_eq!(document.check_response(&op, 200, Some(&class)), Vec::<String>::new());
            // uuid format.
            let op = document.operation("POST", "/v1/batch/objects").unwrap();
            let good = json!({"objects": [{"class": "A", "id": "6F5D3B2E-0000-4000-8000-000000000000"}]});
            assert!(document.check_request(&op, &[], Some(&good)).rejection.is_none());
            let bad = json!({"objects": [{"class": "A", "id": "not-a-uuid"}]});
            let check = document.check_request(&op, &[], Some(&bad));
            assert!(check.violations[0].contains("/objects/0/id"), "{:?}", check.violations);
            // allOf: the batch answer's item merges Object and the result.
            let answer = json!([{"class": "A", "id": "6f5d3b2e-0000-4000-8000-000000000000", "properties": {},
                "result": {"status": "SUCCESS"}}]);
            assert_eq!(document.check_response(&op, 200, Some(&answer)), Vec::<String>::new());
        }
    }

    #[test]
    fn undocumented_fields_types_and_statuses_are_reported() {
        let document = load("1.22.13");
        let op = document.operation("GET", "/v1/meta").unwrap();
        let errors = document.check_response(&op, 200, Some(&json!({"version": 122})));
        assert!(errors[0].contains("/version"), "{errors:?}");
        assert!(!document.check_response(&op, 200, Some(&json!({"version": "1", "extra": 1}))).is_empty());
        assert!(!document.check_response(&op, 418, None).is_empty());
        assert!(!document.check_response(&op, 200, None).is_empty());
        let op = document.operation("POST", "/v1/schema").unwrap();
        let check = document.check_request(&op, &[], Some(&json!({"classes": [{"class": "A"}]})));
        assert!(check.rejection.is_some());
        assert!(check.violations[0].contains("classes"), "{:?}", check.violations);
        // A 1.39 field sent to 1.22.
        let check = document.check_request(&op, &[], Some(&json!({"class": "A", "vectorConfig": {}})));
        assert!(check.rejection.is_some());
        let op = document.operation("GET", "/v1/objects").unwrap();
        let limit = [("limit".to_owned(), "ten".to_owned())];
        assert!(document.check_request(&op, &limit, None).rejection.is_some());
        let unknown = [("output".to_owned(), "verbose".to_owned())];
        assert!(document.check_request(&op, &unknown, None).violations.is_empty());
    }
}
