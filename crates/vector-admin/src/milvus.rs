//! The Milvus backend, on the gRPC service that milvus-sdk-rust generates from Milvus' protocol
//! definitions. Requests are built directly: inserts move the caller's columns without copying
//! them row by row, flush is polled at a fine grain, and expressions are written the way Milvus
//! 2.3 accepts them (its expression templates are rejected by 2.3.5).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use datastores::{ConnectError, Datastore, MilvusConfig, MilvusGrpc};
use milvus::proto::common::{
    ConsistencyLevel, DslType, IndexState as PIndexState, KeyValuePair, LoadState as PLoadState, PlaceholderGroup,
    PlaceholderType, PlaceholderValue, Status,
};
use milvus::proto::milvus as pm;
use milvus::proto::schema::{
    BoolArray, CollectionSchema, DataType, DoubleArray, FieldData, FieldSchema, FloatArray, IntArray, JsonArray,
    LongArray, ScalarField, StringArray, VectorField, field_data, i_ds, scalar_field, vector_field,
};
use prost::Message;

use crate::error::{Backend, Error, Result};
use crate::preset::{BuildParams, IndexKind, Metric, SearchParams};
use crate::spec::{CollectionSpec, Consistency, FieldKind, FieldSpec, IndexSpec, ResolvedIndex, Vectorizer};
use crate::store::{
    Batch, Column, FlushReport, Hit, IndexInfo, IndexState, Keys, LoadState, ServerInfo, ShardInfo, Stats, VectorStore,
};

const TTL_PROPERTY: &str = "collection.ttl.seconds";

/// Milvus, through one gRPC channel (cheap to clone; clones share the channel).
#[derive(Clone, Debug)]
pub struct MilvusStore {
    grpc: MilvusGrpc,
    endpoint: String,
    /// How long a flush may take before it is reported as a timeout (10 minutes by default).
    pub flush_deadline: Duration,
}

impl MilvusStore {
    /// Opens the gRPC channel `config` describes (TLS, credentials, database), within its connect
    /// timeout. `flush_deadline` starts at 10 minutes.
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] naming the endpoint when the server cannot be reached or the TLS or
    /// credential settings are unusable.
    pub async fn connect(config: &MilvusConfig) -> Result<MilvusStore> {
        Ok(MilvusStore {
            grpc: config.grpc().await?,
            endpoint: config.endpoint(),
            flush_deadline: Duration::from_secs(600),
        })
    }

    fn rpc(&self, operation: &str, status: tonic::Status) -> Error {
        use tonic::Code;
        match status.code() {
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled => Error::Connect(ConnectError::message(
                Datastore::Milvus,
                &self.endpoint,
                format!("{operation}: {}", status.message()),
            )),
            Code::Unauthenticated | Code::PermissionDenied => Error::server(
                Backend::Milvus,
                operation,
                format!("{} (check MILVUS_USER / MILVUS_PASSWORD or MILVUS_TOKEN)", status.message()),
            ),
            _ => Error::server(Backend::Milvus, operation, status.message()),
        }
    }

    /// The segments of a collection that are persisted (flushed), with their rows. Milvus only.
    pub async fn segments(&self, name: &str) -> Result<Vec<ShardInfo>> {
        let request = pm::GetPersistentSegmentInfoRequest { collection_name: name.into(), ..Default::default() };
        let answer = self
            .grpc
            .clone()
            .get_persistent_segment_info(request)
            .await
            .map_err(|s| self.rpc("list segments", s))?
            .into_inner();
        check(answer.status, "list segments", Some(name))?;
        Ok(answer
            .infos
            .into_iter()
            .filter(|s| s.state != ps_state::DROPPED)
            .map(|s| ShardInfo {
                name: s.segment_id.to_string(),
                rows: s.num_rows.max(0) as u64,
                state: ps_state::name(s.state),
            })
            .collect())
    }

    /// Rows that a search can see right now (`count(*)` on a loaded collection). Milvus only.
    pub async fn count_rows(&self, name: &str) -> Result<u64> {
        let request = pm::QueryRequest {
            collection_name: name.into(),
            expr: String::new(),
            output_fields: vec!["count(*)".into()],
            consistency_level: ConsistencyLevel::Strong as i32,
            ..Default::default()
        };
        let answer = self.grpc.clone().query(request).await.map_err(|s| self.rpc("count rows", s))?.into_inner();
        check(answer.status, "count rows", Some(name))?;
        answer
            .fields_data
            .into_iter()
            .find_map(|f| match f.field {
                Some(field_data::Field::Scalars(ScalarField {
                    data: Some(scalar_field::Data::LongData(l)), ..
                })) => l.data.first().copied(),
                _ => None,
            })
            .map(|n| n.max(0) as u64)
            .ok_or_else(|| Error::protocol(Backend::Milvus, "count rows", "no count in the answer"))
    }

    async fn collection_id(&self, name: &str) -> Result<i64> {
        let answer = self.describe_raw(name).await?;
        Ok(answer.collection_id)
    }

    async fn describe_raw(&self, name: &str) -> Result<pm::DescribeCollectionResponse> {
        let request = pm::DescribeCollectionRequest { collection_name: name.into(), ..Default::default() };
        let answer =
            self.grpc.clone().describe_collection(request).await.map_err(|s| self.rpc("describe collection", s))?;
        let answer = answer.into_inner();
        check(answer.status.clone(), "describe collection", Some(name))?;
        Ok(answer)
    }

    async fn write(&self, upsert: bool, spec: &CollectionSpec, batch: &Batch) -> Result<usize> {
        batch.check(spec)?;
        let operation = if upsert { "upsert" } else { "insert" };
        let fields_data = columns(spec, batch)?;
        let num_rows = batch.rows() as u32;
        let name = spec.name.clone();
        let answer = if upsert {
            let request = pm::UpsertRequest { collection_name: name, fields_data, num_rows, ..Default::default() };
            self.grpc.clone().upsert(request).await
        } else {
            let request = pm::InsertRequest { collection_name: name, fields_data, num_rows, ..Default::default() };
            self.grpc.clone().insert(request).await
        }
        .map_err(|s| self.rpc(operation, s))?
        .into_inner();
        check(answer.status, operation, Some(&spec.name))?;
        if let Some(&first) = answer.err_index.first() {
            return Err(Error::Rejected {
                backend: Backend::Milvus,
                failed: answer.err_index.len(),
                total: batch.rows(),
                first: format!("row {first} (key {})", batch.keys.get(first as usize)),
            });
        }
        Ok(if upsert { answer.upsert_cnt } else { answer.insert_cnt }.max(0) as usize)
    }
}

/// Names of Milvus' segment states.
mod ps_state {
    pub const DROPPED: i32 = 6;
    pub fn name(state: i32) -> String {
        match state {
            2 => "growing",
            3 => "sealed",
            4 => "flushed",
            5 => "flushing",
            6 => "dropped",
            7 => "importing",
            _ => "unknown",
        }
        .into()
    }
}

/// Fails on a Milvus status other than success. A missing collection becomes `NotFound`.
/// Milvus 2.3 fills in only the deprecated `error_code`; later versions `code`.
#[allow(deprecated)]
fn check(status: Option<Status>, operation: &str, collection: Option<&str>) -> Result<()> {
    let status = status.unwrap_or_default();
    if status.error_code == 0 && status.code == 0 {
        return Ok(());
    }
    if let Some(name) = collection {
        // 2.3.5 answers error_code CollectionNotExists (4) or code 100 "can't find collection".
        if status.error_code == 4
            || status.code == 100
            || status.reason.contains("can't find collection")
            || status.reason.contains("collection not found")
        {
            return Err(Error::NotFound { backend: Backend::Milvus, collection: name.into() });
        }
    }
    Err(Error::server(Backend::Milvus, operation, status.reason))
}

fn is_index_missing(e: &Error) -> bool {
    matches!(e, Error::Server { message, .. } if message.contains("index") && (message.contains("not found") || message.contains("not exist")))
}

fn kv(key: &str, value: impl ToString) -> KeyValuePair {
    KeyValuePair { key: key.into(), value: value.to_string() }
}

fn data_type(kind: &FieldKind) -> Result<DataType> {
    Ok(match kind {
        FieldKind::Bool => DataType::Bool,
        FieldKind::Int32 => DataType::Int32,
        FieldKind::Int64 => DataType::Int64,
        FieldKind::Float => DataType::Float,
        FieldKind::Double => DataType::Double,
        FieldKind::Varchar => DataType::VarChar,
        FieldKind::Json => DataType::Json,
        other => return Err(Error::invalid(format!("Milvus has no field type {other:?}"))),
    })
}

fn field_kind(data_type: i32) -> FieldKind {
    match DataType::try_from(data_type) {
        Ok(DataType::Bool) => FieldKind::Bool,
        Ok(DataType::Int32) => FieldKind::Int32,
        Ok(DataType::Int64) => FieldKind::Int64,
        Ok(DataType::Float) => FieldKind::Float,
        Ok(DataType::Double) => FieldKind::Double,
        Ok(DataType::VarChar) => FieldKind::Varchar,
        Ok(DataType::Json) => FieldKind::Json,
        Ok(other) => FieldKind::Other(other.as_str_name().to_owned()),
        Err(_) => FieldKind::Other(format!("type {data_type}")),
    }
}

fn consistency_level(c: Consistency) -> ConsistencyLevel {
    match c {
        Consistency::Strong => ConsistencyLevel::Strong,
        Consistency::Session => ConsistencyLevel::Session,
        Consistency::Bounded => ConsistencyLevel::Bounded,
        Consistency::Eventually => ConsistencyLevel::Eventually,
    }
}

fn schema(spec: &CollectionSpec) -> Result<CollectionSchema> {
    let key = spec.key.as_ref().ok_or_else(|| Error::invalid(format!("collection {} has no key", spec.name)))?;
    let scalar = |f: &FieldSpec, primary: bool| -> Result<FieldSchema> {
        Ok(FieldSchema {
            name: f.name.clone(),
            description: f.description.clone(),
            is_primary_key: primary,
            data_type: data_type(&f.kind)? as i32,
            type_params: f
                .max_length
                .filter(|_| f.kind == FieldKind::Varchar)
                .map(|m| vec![kv("max_length", m)])
                .unwrap_or_default(),
            ..Default::default()
        })
    };
    let mut fields = vec![scalar(key, true)?];
    fields.push(FieldSchema {
        name: spec.vector_field.clone(),
        data_type: DataType::FloatVector as i32,
        type_params: vec![kv("dim", spec.dim.unwrap_or_default())],
        ..Default::default()
    });
    for field in &spec.fields {
        fields.push(scalar(field, false)?);
    }
    Ok(CollectionSchema {
        name: spec.name.clone(),
        description: spec.description.clone(),
        fields,
        ..Default::default()
    })
}

/// The batch as Milvus columns, in the collection's field order. Every field needs a column:
/// Milvus 2.3 has no nullable fields or defaults.
fn columns(spec: &CollectionSpec, batch: &Batch) -> Result<Vec<FieldData>> {
    let key = spec.key.as_ref().ok_or_else(|| Error::invalid(format!("collection {} has no key", spec.name)))?;
    let scalars = |data| Some(field_data::Field::Scalars(ScalarField { data: Some(data), ..Default::default() }));
    let key_data = match (&batch.keys, &key.kind) {
        (Keys::Str(k), FieldKind::Varchar) => scalars(scalar_field::Data::StringData(StringArray { data: k.clone() })),
        (Keys::Int(k), FieldKind::Int64) => scalars(scalar_field::Data::LongData(LongArray { data: k.clone() })),
        _ => return Err(Error::invalid(format!("collection {}: keys must be {:?}", spec.name, key.kind))),
    };
    let mut out = vec![
        FieldData {
            r#type: data_type(&key.kind)? as i32,
            field_name: key.name.clone(),
            field: key_data,
            ..Default::default()
        },
        FieldData {
            r#type: DataType::FloatVector as i32,
            field_name: spec.vector_field.clone(),
            field: Some(field_data::Field::Vectors(VectorField {
                dim: batch.dim as i64,
                data: Some(vector_field::Data::FloatVector(FloatArray { data: batch.vectors.clone() })),
                ..Default::default()
            })),
            ..Default::default()
        },
    ];
    for field in &spec.fields {
        let column = batch.columns.iter().find(|(n, _)| n == &field.name).map(|(_, c)| c).ok_or_else(|| {
            Error::invalid(format!(
                "collection {}: no values for field {} (Milvus 2.3 needs a value in every field)",
                spec.name, field.name
            ))
        })?;
        let data = match (column, &field.kind) {
            (Column::Bool(v), FieldKind::Bool) => scalar_field::Data::BoolData(BoolArray { data: v.clone() }),
            (Column::Int32(v), FieldKind::Int32) => scalar_field::Data::IntData(IntArray { data: v.clone() }),
            (Column::Int64(v), FieldKind::Int64) => scalar_field::Data::LongData(LongArray { data: v.clone() }),
            (Column::Float(v), FieldKind::Float) => scalar_field::Data::FloatData(FloatArray { data: v.clone() }),
            (Column::Double(v), FieldKind::Double) => scalar_field::Data::DoubleData(DoubleArray { data: v.clone() }),
            (Column::Str(v), FieldKind::Varchar) => {
                let max = field.max_length.unwrap_or(65_535) as usize;
                if let Some(i) = v.iter().position(|s| s.len() > max) {
                    return Err(Error::invalid(format!(
                        "collection {}: field {} of row {i} is longer than its max_length {max}",
                        spec.name, field.name
                    )));
                }
                scalar_field::Data::StringData(StringArray { data: v.clone() })
            }
            (Column::Json(v), FieldKind::Json) => scalar_field::Data::JsonData(JsonArray {
                data: v.iter().map(|j| serde_json::to_vec(j).unwrap_or_default()).collect(),
            }),
            (_, kind) => {
                return Err(Error::invalid(format!(
                    "collection {}: values of field {} are not of its type {kind:?}",
                    spec.name, field.name
                )));
            }
        };
        out.push(FieldData {
            r#type: data_type(&field.kind)? as i32,
            field_name: field.name.clone(),
            field: scalars(data),
            ..Default::default()
        });
    }
    Ok(out)
}

/// Milvus' index parameters: `params` as a JSON string (2.3) or flattened keys (2.4+).
fn read_index(params: &[KeyValuePair]) -> Result<ResolvedIndex> {
    let get = |k: &str| params.iter().find(|p| p.key == k).map(|p| p.value.as_str());
    let kind_name = get("index_type").unwrap_or("");
    let kind = IndexKind::from_milvus(kind_name).ok_or_else(|| {
        Error::protocol(Backend::Milvus, "describe index", format!("unknown index type {kind_name:?}"))
    })?;
    let metric = get("metric_type").and_then(Metric::from_name).unwrap_or(Metric::L2);
    let mut nested: HashMap<String, serde_json::Value> =
        get("params").and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
    for p in params {
        nested.entry(p.key.clone()).or_insert_with(|| p.value.clone().into());
    }
    let number = |k: &str| {
        nested.get(k).and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))).map(|n| n as u32)
    };
    Ok(ResolvedIndex {
        kind,
        metric,
        build: BuildParams { nlist: number("nlist"), m: number("M"), ef_construction: number("efConstruction") },
        search: SearchParams::default(),
        compression: Default::default(),
    })
}

fn build_json(index: &ResolvedIndex) -> String {
    serde_json::to_string(&index.build).unwrap_or_else(|_| "{}".into())
}

fn search_json(params: &SearchParams) -> String {
    serde_json::to_string(params).unwrap_or_else(|_| "{}".into())
}

/// A filter on keys, quoted the way Milvus' expression parser reads strings.
fn key_filter(key: &str, keys: &Keys) -> String {
    let list = match keys {
        Keys::Int(k) => k.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
        Keys::Str(k) => k.iter().map(|s| serde_json::Value::from(s.as_str()).to_string()).collect::<Vec<_>>().join(","),
    };
    format!("{key} in [{list}]")
}

impl VectorStore for MilvusStore {
    fn backend(&self) -> Backend {
        Backend::Milvus
    }

    async fn server(&self) -> Result<ServerInfo> {
        let health = self
            .grpc
            .clone()
            .check_health(pm::CheckHealthRequest {})
            .await
            .map_err(|s| self.rpc("check health", s))?
            .into_inner();
        let version =
            self.grpc.clone().get_version(pm::GetVersionRequest {}).await.map_err(|s| self.rpc("get version", s))?;
        let version = version.into_inner();
        check(version.status, "get version", None)?;
        Ok(ServerInfo {
            backend: Backend::Milvus,
            version: version.version,
            healthy: health.is_healthy,
            notes: health.reasons,
        })
    }

    async fn list(&self) -> Result<Vec<String>> {
        let answer = self
            .grpc
            .clone()
            .show_collections(pm::ShowCollectionsRequest::default())
            .await
            .map_err(|s| self.rpc("list collections", s))?
            .into_inner();
        check(answer.status, "list collections", None)?;
        let mut names = answer.collection_names;
        names.sort();
        Ok(names)
    }

    async fn describe(&self, name: &str) -> Result<Option<CollectionSpec>> {
        let answer = match self.describe_raw(name).await {
            Ok(a) => a,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let schema = answer.schema.unwrap_or_default();
        let mut spec = CollectionSpec::new(name, "", 0, Metric::L2);
        spec.description = schema.description;
        spec.key = None;
        spec.dim = None;
        for field in schema.fields {
            let max_length =
                field.type_params.iter().find(|p| p.key == "max_length").and_then(|p| p.value.parse().ok());
            if field.data_type == DataType::FloatVector as i32 {
                spec.vector_field = field.name;
                spec.dim = field.type_params.iter().find(|p| p.key == "dim").and_then(|p| p.value.parse().ok());
                continue;
            }
            let f = FieldSpec {
                name: field.name,
                kind: field_kind(field.data_type),
                max_length,
                description: field.description,
            };
            if field.is_primary_key { spec.key = Some(f) } else { spec.fields.push(f) }
        }
        spec.shards = answer.shards_num.max(1) as u32;
        spec.consistency = match ConsistencyLevel::try_from(answer.consistency_level) {
            Ok(ConsistencyLevel::Strong) => Consistency::Strong,
            Ok(ConsistencyLevel::Session) => Consistency::Session,
            Ok(ConsistencyLevel::Eventually) => Consistency::Eventually,
            _ => Consistency::Bounded,
        };
        spec.ttl_seconds = answer.properties.iter().find(|p| p.key == TTL_PROPERTY).and_then(|p| p.value.parse().ok());
        spec.vectorizer = Vectorizer::None;
        spec.index = IndexSpec::default();
        // The metric belongs to the index in Milvus.
        if let Some(info) = self.describe_index(name).await? {
            spec.metric = info.index.metric;
        }
        Ok(Some(spec))
    }

    async fn create(&self, spec: &CollectionSpec, _index: &ResolvedIndex) -> Result<()> {
        let request = pm::CreateCollectionRequest {
            collection_name: spec.name.clone(),
            schema: schema(spec)?.encode_to_vec(),
            shards_num: spec.shards as i32,
            consistency_level: consistency_level(spec.consistency) as i32,
            properties: spec.ttl_seconds.map(|t| vec![kv(TTL_PROPERTY, t)]).unwrap_or_default(),
            ..Default::default()
        };
        let answer =
            self.grpc.clone().create_collection(request).await.map_err(|s| self.rpc("create collection", s))?;
        check(Some(answer.into_inner()), &format!("create collection {}", spec.name), None)
    }

    async fn add_fields(&self, name: &str, fields: &[FieldSpec]) -> Result<()> {
        Err(Error::Unsupported {
            backend: Backend::Milvus,
            what: format!(
                "adding fields {} to {name}",
                fields.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
            why: "Milvus 2.3 cannot change a collection's schema; recreate it and load the data again".into(),
        })
    }

    async fn drop_collection(&self, name: &str) -> Result<()> {
        let request = pm::DropCollectionRequest { collection_name: name.into(), ..Default::default() };
        let answer = self.grpc.clone().drop_collection(request).await.map_err(|s| self.rpc("drop collection", s))?;
        check(Some(answer.into_inner()), "drop collection", Some(name))
    }

    async fn create_index(&self, name: &str, spec: &CollectionSpec, index: &ResolvedIndex) -> Result<()> {
        index.build.validate(index.kind)?;
        let request = pm::CreateIndexRequest {
            collection_name: name.into(),
            field_name: spec.vector_field.clone(),
            extra_params: vec![
                kv("index_type", index.kind.milvus()),
                kv("metric_type", index.metric.milvus()),
                kv("params", build_json(index)),
            ],
            ..Default::default()
        };
        let answer = self.grpc.clone().create_index(request).await.map_err(|s| self.rpc("create index", s))?;
        check(Some(answer.into_inner()), &format!("create index on {name}"), Some(name))
    }

    async fn describe_index(&self, name: &str) -> Result<Option<IndexInfo>> {
        let request = pm::DescribeIndexRequest { collection_name: name.into(), ..Default::default() };
        let answer =
            self.grpc.clone().describe_index(request).await.map_err(|s| self.rpc("describe index", s))?.into_inner();
        match check(answer.status, "describe index", Some(name)) {
            Ok(()) => {}
            Err(e) if is_index_missing(&e) => return Ok(None),
            Err(e) => return Err(e),
        }
        let Some(d) = answer.index_descriptions.into_iter().next() else { return Ok(None) };
        let index = read_index(&d.params)?;
        let (indexed, total) = (d.indexed_rows.max(0) as u64, d.total_rows.max(0) as u64);
        // 2.3.5 reports Finished while rows are still pending; that is still a build in progress.
        let state = match PIndexState::try_from(d.state) {
            Ok(PIndexState::Failed) => IndexState::Failed { reason: d.index_state_fail_reason },
            Ok(PIndexState::Finished) if d.pending_index_rows == 0 => IndexState::Finished,
            _ => IndexState::Building { indexed, total },
        };
        Ok(Some(IndexInfo { index, state }))
    }

    async fn drop_index(&self, name: &str) -> Result<()> {
        let field = self.describe(name).await?.map(|s| s.vector_field).unwrap_or_default();
        let request = pm::DropIndexRequest { collection_name: name.into(), field_name: field, ..Default::default() };
        let answer = self.grpc.clone().drop_index(request).await.map_err(|s| self.rpc("drop index", s))?;
        check(Some(answer.into_inner()), &format!("drop index on {name}"), Some(name))
    }

    async fn load(&self, name: &str) -> Result<()> {
        let request =
            pm::LoadCollectionRequest { collection_name: name.into(), replica_number: 1, ..Default::default() };
        let answer = self.grpc.clone().load_collection(request).await.map_err(|s| self.rpc("load", s))?;
        check(Some(answer.into_inner()), &format!("load {name}"), Some(name))
    }

    async fn release(&self, name: &str) -> Result<()> {
        let request = pm::ReleaseCollectionRequest { collection_name: name.into(), ..Default::default() };
        let answer = self.grpc.clone().release_collection(request).await.map_err(|s| self.rpc("release", s))?;
        check(Some(answer.into_inner()), &format!("release {name}"), Some(name))
    }

    async fn load_state(&self, name: &str) -> Result<LoadState> {
        let request = pm::GetLoadStateRequest { collection_name: name.into(), ..Default::default() };
        let answer =
            self.grpc.clone().get_load_state(request).await.map_err(|s| self.rpc("load state", s))?.into_inner();
        check(answer.status, "load state", Some(name))?;
        Ok(match PLoadState::try_from(answer.state) {
            Ok(PLoadState::Loaded) => LoadState::Loaded,
            Ok(PLoadState::Loading) => {
                let request = pm::GetLoadingProgressRequest { collection_name: name.into(), ..Default::default() };
                let progress =
                    self.grpc.clone().get_loading_progress(request).await.map_err(|s| self.rpc("load progress", s))?;
                LoadState::Loading(progress.into_inner().progress.clamp(0, 100) as u8)
            }
            Ok(PLoadState::NotExist) => {
                return Err(Error::NotFound { backend: Backend::Milvus, collection: name.into() });
            }
            _ => LoadState::NotLoaded,
        })
    }

    async fn flush(&self, names: &[String]) -> Result<FlushReport> {
        let request = pm::FlushRequest { collection_names: names.to_vec(), ..Default::default() };
        let answer = self.grpc.clone().flush(request).await.map_err(|s| self.rpc("flush", s))?.into_inner();
        check(answer.status, "flush", names.first().map(String::as_str).filter(|_| names.len() == 1))?;
        let started = Instant::now();
        let mut report = FlushReport { applicable: true, ..FlushReport::default() };
        for name in names {
            let segments = answer.coll_seg_i_ds.get(name).map(|l| l.data.clone()).unwrap_or_default();
            let flush_ts = answer.coll_flush_ts.get(name).copied().unwrap_or_default();
            // Polled at 100 ms: a flush of a few segments takes a few hundred milliseconds.
            loop {
                let request = pm::GetFlushStateRequest {
                    segment_i_ds: segments.clone(),
                    flush_ts,
                    collection_name: name.clone(),
                    ..Default::default()
                };
                let state = self
                    .grpc
                    .clone()
                    .get_flush_state(request)
                    .await
                    .map_err(|s| self.rpc("flush state", s))?
                    .into_inner();
                check(state.status, "flush state", Some(name))?;
                if state.flushed {
                    break;
                }
                if started.elapsed() > self.flush_deadline {
                    return Err(Error::Timeout {
                        what: format!("flush of {name}"),
                        waited: started.elapsed(),
                        progress: format!("{} segments sealed, not yet persisted", segments.len()),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            report.segments.push((name.clone(), segments.len()));
        }
        Ok(report)
    }

    async fn start_compaction(&self, name: &str) -> Result<Option<i64>> {
        let collection_id = self.collection_id(name).await?;
        let request = pm::ManualCompactionRequest { collection_id, collection_name: name.into(), ..Default::default() };
        let answer =
            self.grpc.clone().manual_compaction(request).await.map_err(|s| self.rpc("compact", s))?.into_inner();
        check(answer.status, &format!("compact {name}"), Some(name))?;
        Ok(Some(answer.compaction_id))
    }

    async fn compaction_done(&self, id: i64) -> Result<(bool, u64, u64)> {
        let request = pm::GetCompactionStateRequest { compaction_id: id };
        let answer = self
            .grpc
            .clone()
            .get_compaction_state(request)
            .await
            .map_err(|s| self.rpc("compaction state", s))?
            .into_inner();
        check(answer.status, "compaction state", None)?;
        // State 2 is Completed.
        let failed = (answer.failed_plan_no.max(0) + answer.timeout_plan_no.max(0)) as u64;
        Ok((answer.state == 2, answer.completed_plan_no.max(0) as u64, failed))
    }

    async fn stats(&self, name: &str) -> Result<Stats> {
        let request = pm::GetCollectionStatisticsRequest { collection_name: name.into(), ..Default::default() };
        let answer = self
            .grpc
            .clone()
            .get_collection_statistics(request)
            .await
            .map_err(|s| self.rpc("statistics", s))?
            .into_inner();
        check(answer.status, "statistics", Some(name))?;
        let load = self.load_state(name).await?;
        // The statistics count every row written, deleted or replaced ones too, until a
        // compaction; a loaded collection is counted exactly.
        let rows = match load {
            LoadState::Loaded => self.count_rows(name).await?,
            _ => answer.stats.iter().find(|p| p.key == "row_count").and_then(|p| p.value.parse().ok()).unwrap_or(0),
        };
        Ok(Stats {
            collection: name.into(),
            rows,
            index: self.describe_index(name).await?,
            load,
            shards: self.segments(name).await?,
        })
    }

    async fn insert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize> {
        self.write(false, spec, batch).await
    }

    async fn upsert(&self, spec: &CollectionSpec, batch: &Batch) -> Result<usize> {
        self.write(true, spec, batch).await
    }

    async fn delete(&self, spec: &CollectionSpec, keys: &Keys) -> Result<()> {
        let key = spec.key.as_ref().ok_or_else(|| Error::invalid(format!("collection {} has no key", spec.name)))?;
        if keys.is_empty() {
            return Ok(());
        }
        let request = pm::DeleteRequest {
            collection_name: spec.name.clone(),
            expr: key_filter(&key.name, keys),
            ..Default::default()
        };
        let answer = self.grpc.clone().delete(request).await.map_err(|s| self.rpc("delete", s))?.into_inner();
        check(answer.status, "delete", Some(&spec.name))
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
        crate::store::check_queries(spec, queries)?;
        let group = PlaceholderGroup {
            placeholders: vec![PlaceholderValue {
                tag: "$0".into(),
                r#type: PlaceholderType::FloatVector as i32,
                values: queries.iter().map(|q| q.iter().flat_map(|f| f.to_le_bytes()).collect()).collect(),
                ..Default::default()
            }],
        };
        let request = pm::SearchRequest {
            collection_name: spec.name.clone(),
            dsl_type: DslType::BoolExprV1 as i32,
            search_input: Some(pm::search_request::SearchInput::PlaceholderGroup(group.encode_to_vec())),
            search_params: vec![
                kv("anns_field", &spec.vector_field),
                kv("topk", k),
                kv("metric_type", index.metric.milvus()),
                kv("params", search_json(params)),
                kv("round_decimal", -1),
            ],
            nq: queries.len() as i64,
            use_default_consistency: true,
            ..Default::default()
        };
        let answer = self.grpc.clone().search(request).await.map_err(|s| self.rpc("search", s))?.into_inner();
        check(answer.status, "search", Some(&spec.name))?;
        let results = answer.results.unwrap_or_default();
        let ids: Vec<String> = match results.ids.and_then(|i| i.id_field) {
            Some(i_ds::IdField::StrId(s)) => s.data,
            Some(i_ds::IdField::IntId(l)) => l.data.iter().map(i64::to_string).collect(),
            _ => Vec::new(),
        };
        let mut out = Vec::with_capacity(queries.len());
        let mut at = 0usize;
        for n in results.topks.iter().map(|&n| n.max(0) as usize).chain(std::iter::repeat(0)).take(queries.len()) {
            let hits = (at..at + n)
                .filter_map(|i| Some(Hit { key: ids.get(i)?.clone(), score: *results.scores.get(i)? }))
                .collect();
            out.push(hits);
            at += n;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_parameters_of_both_shapes_are_read() {
        let nested =
            [kv("index_type", "HNSW"), kv("metric_type", "IP"), kv("params", r#"{"M":16,"efConstruction":200}"#)];
        let index = read_index(&nested).unwrap();
        assert_eq!(
            (index.kind, index.metric, index.build.m, index.build.ef_construction),
            (IndexKind::Hnsw, Metric::Ip, Some(16), Some(200))
        );
        let flat = [kv("index_type", "IVF_FLAT"), kv("metric_type", "L2"), kv("nlist", "128")];
        assert_eq!(read_index(&flat).unwrap().build.nlist, Some(128));
    }

    #[test]
    fn key_filters_quote_strings() {
        let keys = Keys::Str(vec!["a".into(), "b\"c".into()]);
        assert_eq!(key_filter("item_id", &keys), r#"item_id in ["a","b\"c"]"#);
        assert_eq!(key_filter("id", &Keys::Int(vec![1, 2])), "id in [1,2]");
    }
}
