//! The Weaviate backend, on its REST API (`/v1`) and GraphQL for searches and counts.
//!
//! Weaviate differs from Milvus in ways the trait hides or reports: the index belongs to the
//! class (created with it, never dropped alone); every class is always searchable (nothing to
//! load or release); it persists and compacts on its own. Its server fills in module and index
//! defaults, so a class is compared after normalising what it answers, and an update fetches the
//! class, changes it and sends it back whole. Batch writes answer 200 even when objects fail, so
//! every object's result is checked.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use datastores::{WeaviateClient, WeaviateConfig, weaviate_error_detail};

use crate::error::{Backend, Error, Result};
use crate::preset::{BuildParams, Compression, IndexKind, Metric, SearchParams};
use crate::spec::{CollectionSpec, Consistency, FieldKind, FieldSpec, IndexSpec, ResolvedIndex, Vectorizer};
use crate::store::{
    Batch, FlushReport, Hit, IndexInfo, IndexState, Keys, LoadState, ServerInfo, ShardInfo, Stats, VectorStore,
};

/// Object ids are UUIDs; other keys map to UUID v5 in this namespace, so the same key always
/// names the same object.
pub const KEY_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0x6ba7b8149dad11d180b400c04fd430c8);

/// Weaviate, through its REST API and GraphQL (cheap to clone; clones share the HTTP client).
#[derive(Clone, Debug)]
pub struct WeaviateStore {
    client: WeaviateClient,
}

impl WeaviateStore {
    /// Builds the HTTP client `config` describes (TLS, API key, timeout). Sends nothing: the first
    /// request finds out whether the server answers.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the TLS settings are unusable (a CA file that cannot be read).
    ///
    /// ```rust
    /// use datastores::{Settings, Source, WeaviateConfig};
    /// use vector_admin::{Backend, VectorStore, WeaviateStore};
    ///
    /// let settings = Settings::new().layer(
    ///     Source::Environment,
    ///     [("WEAVIATE_URL", "http://127.0.0.1:8080"), ("WEAVIATE_API_KEY", "key-f00d")],
    /// );
    /// let store = WeaviateStore::connect(&WeaviateConfig::from_settings(&settings)?)?;
    /// assert_eq!(store.backend(), Backend::Weaviate);
    /// // The API key never shows in Debug output.
    /// assert!(!format!("{store:?}").contains("key-f00d"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect(config: &WeaviateConfig) -> Result<WeaviateStore> {
        Ok(WeaviateStore { client: config.client()? })
    }

    /// The id Weaviate stores for `key`.
    pub fn object_id(key: &str) -> uuid::Uuid {
        uuid::Uuid::parse_str(key).unwrap_or_else(|_| uuid::Uuid::new_v5(&KEY_NAMESPACE, key.as_bytes()))
    }

    /// Sends a request; `Ok(None)` for 404, an error naming Weaviate's message for other failures.
    async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Result<Option<Value>> {
        let (status, bytes) = self.client.exchange(method.clone(), path, body).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let hint = match status {
                StatusCode::UNAUTHORIZED => " (check WEAVIATE_API_KEY)",
                StatusCode::FORBIDDEN => " (the API key lacks permission)",
                _ => "",
            };
            return Err(Error::server(
                Backend::Weaviate,
                format!("{method} /v1/{path}"),
                format!("{status}{hint}: {}", weaviate_error_detail(&bytes)),
            ));
        }
        if bytes.is_empty() {
            return Ok(Some(Value::Null));
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::protocol(Backend::Weaviate, format!("{method} /v1/{path}"), e))
    }

    async fn class(&self, name: &str) -> Result<Option<Value>> {
        self.call(Method::GET, &format!("schema/{name}"), None).await
    }

    async fn graphql(&self, query: String) -> Result<Value> {
        let answer = self
            .call(Method::POST, "graphql", Some(&json!({ "query": query })))
            .await?
            .ok_or_else(|| Error::protocol(Backend::Weaviate, "graphql", "404"))?;
        if let Some(errors) = answer.get("errors").and_then(Value::as_array).filter(|e| !e.is_empty()) {
            let messages: Vec<&str> = errors.iter().filter_map(|e| e["message"].as_str()).collect();
            return Err(Error::server(Backend::Weaviate, "graphql", messages.join("; ")));
        }
        Ok(answer)
    }

    /// The modules the server has enabled, from `/v1/meta`.
    pub async fn modules(&self) -> Result<Vec<String>> {
        let meta = self.client.meta().await?;
        Ok(meta.modules.map(|m| m.keys().cloned().collect()).unwrap_or_default())
    }

    async fn write(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize> {
        batch.check(spec)?;
        let objects: Vec<Value> = (0..batch.rows())
            .map(|i| {
                let properties: serde_json::Map<String, Value> =
                    batch.columns.iter().map(|(name, column)| (name.clone(), column.json(i))).collect();
                json!({
                    "class": spec.name,
                    "id": WeaviateStore::object_id(&batch.keys.get(i)).to_string(),
                    "properties": properties,
                    "vector": batch.vector(i),
                })
            })
            .collect();
        let answer = self
            .call(Method::POST, "batch/objects", Some(&json!({ "objects": objects })))
            .await?
            .ok_or_else(|| Error::protocol(Backend::Weaviate, "batch", "404"))?;
        let results = answer.as_array().ok_or_else(|| Error::protocol(Backend::Weaviate, "batch", "not a list"))?;
        if results.len() != batch.rows() {
            return Err(Error::protocol(
                Backend::Weaviate,
                "batch",
                format!("{} results for {} objects", results.len(), batch.rows()),
            ));
        }
        // 200 does not mean written: each object carries its own result.
        let failed: Vec<(usize, String)> = results
            .iter()
            .enumerate()
            .filter_map(|(i, r)| {
                let errors = r["result"]["errors"]["error"].as_array()?;
                let message = errors.iter().filter_map(|e| e["message"].as_str()).collect::<Vec<_>>().join("; ");
                (!errors.is_empty()).then_some((i, message))
            })
            .collect();
        if let Some((i, message)) = failed.first() {
            return Err(Error::Rejected {
                backend: Backend::Weaviate,
                failed: failed.len(),
                total: batch.rows(),
                first: format!("object {i} (key {}): {message}", batch.keys.get(*i)),
            });
        }
        Ok(batch.rows())
    }
}

/// How a preset maps onto Weaviate's index types: FLAT → `flat`; HNSW presets → `hnsw` with
/// maxConnections = M, efConstruction and ef; IVF_FLAT → `hnsw` with its defaults; IVF_SQ8 and
/// DISKANN (compressed, for memory) → `hnsw` with product quantisation.
pub fn native(index: &ResolvedIndex) -> ResolvedIndex {
    let hnsw = |build: BuildParams, search: SearchParams, compression| ResolvedIndex {
        kind: IndexKind::Hnsw,
        metric: index.metric,
        build,
        search: SearchParams { nprobe: None, search_list: None, ..search },
        compression,
    };
    match index.kind {
        IndexKind::Flat => ResolvedIndex { search: SearchParams::default(), build: BuildParams::default(), ..*index },
        IndexKind::Hnsw => hnsw(index.build, index.search, index.compression),
        IndexKind::IvfFlat => hnsw(BuildParams::default(), SearchParams::default(), index.compression),
        IndexKind::IvfSq8 | IndexKind::DiskAnn => {
            hnsw(BuildParams::default(), SearchParams::default(), Compression::Pq)
        }
    }
}

fn data_type(kind: &FieldKind) -> Result<&'static str> {
    Ok(match kind {
        FieldKind::Text | FieldKind::Varchar => "text",
        FieldKind::Int32 | FieldKind::Int64 => "int",
        FieldKind::Float | FieldKind::Double => "number",
        FieldKind::Bool => "boolean",
        FieldKind::Blob => "blob",
        FieldKind::Json => return Err(Error::invalid("Weaviate has no JSON property type; use an object or text")),
        FieldKind::Other(t) => return Err(Error::invalid(format!("unknown property type {t}"))),
    })
}

fn property(field: &FieldSpec) -> Result<Value> {
    let mut p = json!({ "name": field.name, "dataType": [data_type(&field.kind)?] });
    if !field.description.is_empty() {
        p["description"] = field.description.clone().into();
    }
    Ok(p)
}

/// The class `spec` describes, as `POST /v1/schema` takes it (one class).
pub fn class_json(spec: &CollectionSpec, index: &ResolvedIndex) -> Result<Value> {
    let index = native(index);
    let properties = spec.fields.iter().map(property).collect::<Result<Vec<_>>>()?;
    let mut config = json!({ "distance": index.metric.weaviate() });
    if index.kind == IndexKind::Hnsw {
        if let Some(m) = index.build.m {
            config["maxConnections"] = m.into();
        }
        if let Some(ef) = index.build.ef_construction {
            config["efConstruction"] = ef.into();
        }
        if let Some(ef) = index.search.ef {
            config["ef"] = ef.into();
        }
        if index.compression == Compression::Pq {
            config["pq"] = json!({ "enabled": true });
        }
    }
    let mut class = json!({
        "class": spec.name,
        "description": spec.description,
        "properties": properties,
        "vectorIndexType": if index.kind == IndexKind::Flat { "flat" } else { "hnsw" },
        "vectorIndexConfig": config,
        "shardingConfig": { "desiredCount": spec.shards },
        "replicationConfig": { "factor": spec.replicas },
    });
    match &spec.vectorizer {
        Vectorizer::None => class["vectorizer"] = "none".into(),
        Vectorizer::Module { module, image_fields } => {
            class["vectorizer"] = module.clone().into();
            if !image_fields.is_empty() {
                class["moduleConfig"] = json!({ module.clone(): { "imageFields": image_fields } });
            }
        }
    }
    Ok(class)
}

/// A class as the server answers it, normalised into a spec (module and index defaults kept out).
fn observe(class: &Value) -> CollectionSpec {
    let name = class["class"].as_str().unwrap_or_default();
    let fields = class["properties"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .map(|p| {
                    let kind = match p["dataType"][0].as_str().unwrap_or_default() {
                        "text" | "string" => FieldKind::Text,
                        "int" => FieldKind::Int64,
                        "number" => FieldKind::Double,
                        "boolean" => FieldKind::Bool,
                        "blob" => FieldKind::Blob,
                        other => FieldKind::Other(other.into()),
                    };
                    FieldSpec {
                        name: p["name"].as_str().unwrap_or_default().into(),
                        kind,
                        max_length: None,
                        description: p["description"].as_str().unwrap_or_default().into(),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let vectorizer = match class["vectorizer"].as_str().unwrap_or("none") {
        "none" => Vectorizer::None,
        module => Vectorizer::Module {
            module: module.into(),
            image_fields: class["moduleConfig"][module]["imageFields"]
                .as_array()
                .map(|f| f.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                .unwrap_or_default(),
        },
    };
    CollectionSpec {
        name: name.into(),
        description: class["description"].as_str().unwrap_or_default().into(),
        key: None,
        fields,
        vector_field: "embedding".into(),
        dim: None,
        metric: read_index(class).metric,
        index: IndexSpec::default(),
        shards: class["shardingConfig"]["desiredCount"].as_u64().unwrap_or(1) as u32,
        replicas: class["replicationConfig"]["factor"].as_u64().unwrap_or(1) as u32,
        consistency: Consistency::default(),
        ttl_seconds: None,
        vectorizer,
    }
}

fn read_index(class: &Value) -> ResolvedIndex {
    let config = &class["vectorIndexConfig"];
    let metric = config["distance"].as_str().and_then(Metric::from_name).unwrap_or(Metric::Cosine);
    let number = |v: &Value| v.as_u64().map(|n| n as u32);
    if class["vectorIndexType"].as_str() == Some("flat") {
        return ResolvedIndex {
            kind: IndexKind::Flat,
            metric,
            build: BuildParams::default(),
            search: SearchParams::default(),
            compression: Compression::None,
        };
    }
    ResolvedIndex {
        kind: IndexKind::Hnsw,
        metric,
        build: BuildParams {
            nlist: None,
            m: number(&config["maxConnections"]),
            ef_construction: number(&config["efConstruction"]),
        },
        // ef -1 is Weaviate's dynamic ef.
        search: SearchParams {
            ef: config["ef"].as_i64().filter(|e| *e > 0).map(|e| e as u32),
            ..SearchParams::default()
        },
        compression: if config["pq"]["enabled"].as_bool() == Some(true) { Compression::Pq } else { Compression::None },
    }
}

/// Drops `null` members: Weaviate's PUT refuses some fields as null that its GET returns so.
fn strip_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

impl VectorStore for WeaviateStore {
    fn backend(&self) -> Backend {
        Backend::Weaviate
    }

    fn native_index(&self, index: &ResolvedIndex) -> ResolvedIndex {
        native(index)
    }

    async fn server(&self) -> Result<ServerInfo> {
        self.client.live().await?;
        let ready = self.client.ready().await;
        let meta = self.client.meta().await?;
        let mut notes = Vec::new();
        if let Err(e) = &ready {
            notes.push(format!("not ready: {e}"));
        }
        let nodes = self.call(Method::GET, "nodes", None).await?.unwrap_or_default();
        let mut healthy = ready.is_ok();
        for node in nodes["nodes"].as_array().into_iter().flatten() {
            let status = node["status"].as_str().unwrap_or("UNKNOWN");
            notes.push(format!("node {} {status}", node["name"].as_str().unwrap_or("?")));
            healthy &= status == "HEALTHY";
        }
        Ok(ServerInfo { backend: Backend::Weaviate, version: meta.version, healthy, notes })
    }

    async fn list(&self) -> Result<Vec<String>> {
        let schema = self.call(Method::GET, "schema", None).await?.unwrap_or_default();
        let mut names: Vec<String> = schema["classes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["class"].as_str().map(String::from))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn describe(&self, name: &str) -> Result<Option<CollectionSpec>> {
        Ok(self.class(name).await?.map(|c| observe(&c)))
    }

    async fn preflight(&self, spec: &CollectionSpec) -> Result<()> {
        if let Vectorizer::Module { module, .. } = &spec.vectorizer {
            // An unknown module is answered 422 only after the request; say it before, with the list.
            let modules = self.modules().await?;
            if !modules.contains(module) {
                return Err(Error::invalid(format!(
                    "class {}: vectorizer {module} is not enabled on this Weaviate (enabled modules: {}); enable it on the server or set vectorizer: none and supply vectors",
                    spec.name,
                    if modules.is_empty() { "none".into() } else { modules.join(", ") }
                )));
            }
        }
        Ok(())
    }

    async fn create(&self, spec: &CollectionSpec, index: &ResolvedIndex) -> Result<()> {
        self.preflight(spec).await?;
        let class = class_json(spec, index)?;
        self.call(Method::POST, "schema", Some(&class)).await?;
        Ok(())
    }

    async fn add_fields(&self, name: &str, fields: &[FieldSpec]) -> Result<()> {
        for field in fields {
            self.call(Method::POST, &format!("schema/{name}/properties"), Some(&property(field)?))
                .await?
                .ok_or_else(|| Error::NotFound { backend: Backend::Weaviate, collection: name.into() })?;
        }
        Ok(())
    }

    async fn drop_collection(&self, name: &str) -> Result<()> {
        self.call(Method::DELETE, &format!("schema/{name}"), None).await?;
        Ok(())
    }

    /// Weaviate builds the index with the class; this changes what it can change in place (ef)
    /// and refuses the rest.
    async fn create_index(&self, name: &str, _spec: &CollectionSpec, index: &ResolvedIndex) -> Result<()> {
        let mut class = self
            .class(name)
            .await?
            .ok_or_else(|| Error::NotFound { backend: Backend::Weaviate, collection: name.into() })?;
        let have = read_index(&class);
        let want = native(index);
        if have.kind != want.kind
            || have.metric != want.metric
            || (want.build.m.is_some() && have.build.m != want.build.m)
            || (want.build.ef_construction.is_some() && have.build.ef_construction != want.build.ef_construction)
            || have.compression != want.compression
        {
            return Err(Error::Unsupported {
                backend: Backend::Weaviate,
                what: format!(
                    "changing the index of class {name} from {} to {}",
                    crate::workflow::describe_index(&have),
                    crate::workflow::describe_index(&want)
                ),
                why: "Weaviate cannot change a class's index type, distance, maxConnections, efConstruction or compression in place: drop the class and run init".into(),
            });
        }
        if let Some(ef) = want.search.ef {
            class["vectorIndexConfig"]["ef"] = ef.into();
        }
        strip_nulls(&mut class);
        self.call(Method::PUT, &format!("schema/{name}"), Some(&class)).await?;
        Ok(())
    }

    async fn describe_index(&self, name: &str) -> Result<Option<IndexInfo>> {
        let Some(class) = self.class(name).await? else { return Ok(None) };
        let index = read_index(&class);
        let shards = self.call(Method::GET, &format!("schema/{name}/shards"), None).await?.unwrap_or_default();
        let indexing = shards.as_array().into_iter().flatten().any(|s| s["status"].as_str() == Some("INDEXING"));
        let state = if indexing { IndexState::Building { indexed: 0, total: 0 } } else { IndexState::Finished };
        Ok(Some(IndexInfo { index, state }))
    }

    async fn drop_index(&self, _name: &str) -> Result<()> {
        Err(Error::Unsupported {
            backend: Backend::Weaviate,
            what: "dropping an index".into(),
            why: "the index belongs to the class; drop the class to remove it".into(),
        })
    }

    async fn load(&self, _name: &str) -> Result<()> {
        Ok(())
    }

    async fn release(&self, _name: &str) -> Result<()> {
        Err(Error::Unsupported {
            backend: Backend::Weaviate,
            what: "release".into(),
            why: "every class stays searchable; there is nothing to release".into(),
        })
    }

    async fn load_state(&self, name: &str) -> Result<LoadState> {
        match self.class(name).await? {
            Some(_) => Ok(LoadState::Loaded),
            None => Err(Error::NotFound { backend: Backend::Weaviate, collection: name.into() }),
        }
    }

    async fn flush(&self, names: &[String]) -> Result<FlushReport> {
        Ok(FlushReport { segments: names.iter().map(|n| (n.clone(), 0)).collect(), applicable: false })
    }

    async fn start_compaction(&self, _name: &str) -> Result<Option<i64>> {
        Ok(None)
    }

    async fn compaction_done(&self, _id: i64) -> Result<(bool, u64, u64)> {
        Ok((true, 0, 0))
    }

    async fn stats(&self, name: &str) -> Result<Stats> {
        let index = self.describe_index(name).await?;
        if index.is_none() {
            return Err(Error::NotFound { backend: Backend::Weaviate, collection: name.into() });
        }
        let answer = self.graphql(format!("{{Aggregate{{{name}{{meta{{count}}}}}}}}")).await?;
        let rows = answer["data"]["Aggregate"][name][0]["meta"]["count"].as_u64().unwrap_or(0);
        let shards = self.call(Method::GET, &format!("schema/{name}/shards"), None).await?.unwrap_or_default();
        let shards = shards
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| ShardInfo {
                name: s["name"].as_str().unwrap_or_default().into(),
                rows: 0,
                state: s["status"].as_str().unwrap_or_default().into(),
            })
            .collect();
        Ok(Stats { collection: name.into(), rows, index, load: LoadState::Loaded, shards })
    }

    async fn insert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize> {
        self.write(spec, batch).await
    }

    async fn upsert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize> {
        self.write(spec, batch).await
    }

    async fn delete(&self, spec: &CollectionSpec, keys: &Keys) -> Result<()> {
        for i in 0..keys.len() {
            let id = WeaviateStore::object_id(&keys.get(i));
            // 404: already gone, which is what was asked.
            self.call(Method::DELETE, &format!("objects/{}/{id}", spec.name), None).await?;
        }
        Ok(())
    }

    async fn search(
        &self,
        spec: &CollectionSpec,
        index: &ResolvedIndex,
        queries: &[Vec<f32>],
        k: usize,
        params: &SearchParams,
    ) -> Result<Vec<Vec<Hit>>> {
        crate::preset::validate_search(index.kind, &index.build, params, k)?;
        if params.nprobe.is_some()
            || params.search_list.is_some()
            || params.ef.is_some_and(|ef| Some(ef) != index.search.ef)
        {
            return Err(Error::Unsupported {
                backend: Backend::Weaviate,
                what: "search parameters per query".into(),
                why: "Weaviate's ef is a setting of the class: set index.search.ef in the spec and apply it".into(),
            });
        }
        crate::store::check_queries(spec, queries)?;
        let mut out = Vec::with_capacity(queries.len());
        for query in queries {
            let vector = serde_json::to_string(query).map_err(|e| Error::invalid(e.to_string()))?;
            let answer = self
                .graphql(format!(
                    "{{Get{{{}(nearVector:{{vector:{vector}}} limit:{k}){{_additional{{id distance}}}}}}}}",
                    spec.name
                ))
                .await?;
            let hits = answer["data"]["Get"][&spec.name]
                .as_array()
                .into_iter()
                .flatten()
                .map(|o| Hit {
                    key: o["_additional"]["id"].as_str().unwrap_or_default().into(),
                    score: o["_additional"]["distance"].as_f64().unwrap_or(f64::NAN) as f32,
                })
                .collect();
            out.push(hits);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::builtin_weaviate;

    #[test]
    fn the_seed_classes_become_one_class_per_request() {
        for spec in builtin_weaviate() {
            let index = spec.index.resolve(spec.metric, None).unwrap();
            let class = class_json(&spec, &index).unwrap();
            assert_eq!(class["class"], spec.name.as_str());
            assert!(class.get("classes").is_none());
            let back = observe(&class);
            assert_eq!(back.fields, spec.fields);
            assert_eq!(back.vectorizer, spec.vectorizer);
        }
        let image = builtin_weaviate().pop().unwrap();
        let class = class_json(&image, &image.index.resolve(image.metric, None).unwrap()).unwrap();
        assert_eq!(class["moduleConfig"]["img2vec-neural"]["imageFields"], json!(["image"]));
    }

    #[test]
    fn keys_map_to_stable_uuids() {
        let a = WeaviateStore::object_id("item-1");
        assert_eq!(a, WeaviateStore::object_id("item-1"));
        assert_ne!(a, WeaviateStore::object_id("item-2"));
        let u = "5f0c1d5e-3c55-4a0e-9f4c-1d2b3c4d5e6f";
        assert_eq!(WeaviateStore::object_id(u).to_string(), u);
    }
}
