//! The workflows users run, written once over [`VectorStore`]: plan and apply specs, replace an
//! index with consent, wait for builds and loads with deadlines, health, compaction and the
//! seed's maintenance routine. Nothing here talks to a server except through the trait.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Backend, Error, Result};
use crate::preset::PresetChoice;
use crate::spec::{CollectionSpec, FieldSpec, ResolvedIndex};
use crate::store::{Batch, CompactionReport, IndexInfo, IndexState, LoadState, Progress, ServerInfo, VectorStore};

/// Deadlines and poll intervals of the waits. The default: index builds 1 h with a stall limit
/// of 10 min, loads and compactions 10 min each, polling every 250 ms.
#[derive(Clone, Copy, Debug)]
pub struct Waits {
    /// The longest an index build may take.
    pub index_deadline: Duration,
    /// An index build whose progress has not moved for this long is reported as stuck.
    pub index_stall: Duration,
    /// The longest a load may take.
    pub load_deadline: Duration,
    /// The longest a compaction may take.
    pub compaction_deadline: Duration,
    /// How often the server is asked while waiting.
    pub poll: Duration,
}

impl Default for Waits {
    fn default() -> Waits {
        Waits {
            index_deadline: Duration::from_secs(3600),
            // Milvus reports indexed rows per finished segment: a large segment's HNSW build
            // moves nothing for minutes.
            index_stall: Duration::from_secs(600),
            load_deadline: Duration::from_secs(600),
            compaction_deadline: Duration::from_secs(600),
            poll: Duration::from_millis(250),
        }
    }
}

/// A step that `apply` would take.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    /// Create the collection (on Weaviate with its index).
    Create,
    /// Add fields the spec has and the server lacks (Weaviate only; Milvus reports drift).
    AddFields {
        /// The names of the fields to add.
        fields: Vec<String>,
    },
    /// Build the index the collection lacks, and wait for it.
    CreateIndex {
        /// The index to build.
        index: ResolvedIndex,
    },
    /// Change index settings the server can change in place (Weaviate's ef).
    TuneIndex {
        /// The index with the new settings.
        index: ResolvedIndex,
    },
    /// Load the collection for search, and wait for it.
    Load,
}

/// A difference between the spec and the server that `apply` does not change.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Drift {
    /// What differs: `dimension`, `metric`, `index`, `field NAME`, ...
    pub what: String,
    /// The server's value.
    pub server: String,
    /// The spec's value.
    pub spec: String,
    /// What it would take to converge: `rebuild index`, `recreate collection`, or `none` when the
    /// difference is only reported (a field on the server that the spec does not name).
    pub needs: String,
}

/// The plan for one collection.
#[derive(Clone, Debug, Serialize)]
pub struct CollectionPlan {
    /// The collection or class name.
    pub collection: String,
    /// Whether the server has it.
    pub exists: bool,
    /// What `apply` would do, in order; empty when the collection must be recreated.
    pub actions: Vec<Action>,
    /// Differences `apply` leaves alone.
    pub drift: Vec<Drift>,
}

/// What [`apply`] would do on one backend: [`plan`]'s answer.
#[derive(Clone, Debug, Serialize)]
pub struct Plan {
    /// The backend planned for.
    pub backend: Backend,
    /// One entry per spec, in the specs' order.
    pub collections: Vec<CollectionPlan>,
}

impl Plan {
    /// The number of actions `apply` would take.
    pub fn changes(&self) -> usize {
        self.collections.iter().map(|c| c.actions.len()).sum()
    }

    /// The number of differences that need a rebuild or a recreate (those only reported are
    /// not counted).
    pub fn drift(&self) -> usize {
        self.collections.iter().map(|c| c.drift.iter().filter(|d| d.needs != "none").count()).sum()
    }
}

fn drift(what: &str, server: impl ToString, spec: impl ToString, needs: &str) -> Drift {
    Drift { what: what.into(), server: server.to_string(), spec: spec.to_string(), needs: needs.into() }
}

/// Compares `spec` with `observed`, what the server has (`index`: its index, `None` when it has
/// none), given the index `wanted`. Returns what `apply` would do and the drift it leaves alone.
/// An `auto` preset keeps whatever index exists. Pure: unit-tested without a server.
///
/// ```rust
/// use vector_admin::workflow::{self, Action};
/// use vector_admin::{Backend, IndexInfo, IndexState, builtin_milvus};
///
/// let spec = builtin_milvus().remove(0);
/// let wanted = workflow::wanted_index(&spec, Some(10_000))?;
///
/// // The server has the collection with another dimension and no index yet.
/// let mut observed = spec.clone();
/// observed.dim = Some(128);
/// let (actions, drift) = workflow::diff(Backend::Milvus, &spec, &observed, None, &wanted);
/// assert_eq!(actions, [Action::CreateIndex { index: wanted }]);
/// assert_eq!((drift[0].what.as_str(), drift[0].needs.as_str()), ("dimension", "recreate collection"));
///
/// // The same collection with the wanted index built needs nothing.
/// let built = IndexInfo { index: wanted, state: IndexState::Finished };
/// assert_eq!(workflow::diff(Backend::Milvus, &spec, &spec, Some(&built), &wanted), (vec![], vec![]));
/// # Ok::<(), vector_admin::Error>(())
/// ```
pub fn diff(
    backend: Backend,
    spec: &CollectionSpec,
    observed: &CollectionSpec,
    index: Option<&IndexInfo>,
    wanted: &ResolvedIndex,
) -> (Vec<Action>, Vec<Drift>) {
    let (mut actions, mut drifts) = (Vec::new(), Vec::new());
    let recreate = "recreate collection";
    let mut compare = |what: &str, server: String, wanted: String| {
        if server != wanted {
            drifts.push(drift(what, server, wanted, recreate));
        }
    };
    let key = |k: &Option<FieldSpec>| k.as_ref().map(|k| format!("{} {:?}", k.name, k.kind)).unwrap_or_default();
    compare("shards", observed.shards.to_string(), spec.shards.to_string());
    if backend == Backend::Milvus {
        compare("dimension", fmt_opt(observed.dim), fmt_opt(spec.dim));
        compare("key", key(&observed.key), key(&spec.key));
        compare("vector field", observed.vector_field.clone(), spec.vector_field.clone());
        compare("consistency", format!("{:?}", observed.consistency), format!("{:?}", spec.consistency));
        compare("ttl_seconds", fmt_opt(observed.ttl_seconds), fmt_opt(spec.ttl_seconds));
    } else {
        compare("vectorizer", format!("{:?}", observed.vectorizer), format!("{:?}", spec.vectorizer));
        compare("replicas", observed.replicas.to_string(), spec.replicas.to_string());
    }
    // Weaviate has one integer, one number and one text type.
    let kind = |k: &crate::FieldKind| match (backend, k) {
        (Backend::Weaviate, crate::FieldKind::Int32) => crate::FieldKind::Int64,
        (Backend::Weaviate, crate::FieldKind::Float) => crate::FieldKind::Double,
        (Backend::Weaviate, crate::FieldKind::Varchar) => crate::FieldKind::Text,
        (_, k) => k.clone(),
    };
    let mut missing = Vec::new();
    for field in &spec.fields {
        match observed.fields.iter().find(|f| f.name == field.name) {
            None => missing.push(field.name.clone()),
            Some(f)
                if kind(&f.kind) != kind(&field.kind)
                    || (f.max_length != field.max_length && field.max_length.is_some() && f.max_length.is_some()) =>
            {
                drifts.push(drift(
                    &format!("field {}", field.name),
                    format!("{:?} {}", f.kind, fmt_opt(f.max_length)),
                    format!("{:?} {}", field.kind, fmt_opt(field.max_length)),
                    recreate,
                ));
            }
            Some(_) => {}
        }
    }
    for field in &observed.fields {
        if !spec.fields.iter().any(|f| f.name == field.name) {
            drifts.push(drift(&format!("field {}", field.name), "present", "not in the spec (left alone)", "none"));
        }
    }
    if !missing.is_empty() {
        match backend {
            // Weaviate adds properties in place; Milvus 2.3 cannot.
            Backend::Weaviate => actions.push(Action::AddFields { fields: missing }),
            Backend::Milvus => {
                drifts.push(drift("fields", "missing", missing.join(", "), recreate));
            }
        }
    }
    match index {
        None => actions.push(Action::CreateIndex { index: *wanted }),
        Some(info) => {
            let have = &info.index;
            if have.metric != wanted.metric {
                drifts.push(drift("metric", have.metric, wanted.metric, "rebuild index"));
            }
            // `auto` keeps whatever index exists: its choice depends on a row count that grows.
            if spec.index.preset != PresetChoice::Auto {
                let build_differs = |a: Option<u32>, b: Option<u32>| b.is_some() && a != b;
                if have.kind != wanted.kind
                    || build_differs(have.build.nlist, wanted.build.nlist)
                    || build_differs(have.build.m, wanted.build.m)
                    || build_differs(have.build.ef_construction, wanted.build.ef_construction)
                    || have.compression != wanted.compression
                {
                    drifts.push(drift("index", describe_index(have), describe_index(wanted), "rebuild index"));
                } else if backend == Backend::Weaviate
                    && wanted.search.ef.is_some()
                    && have.search.ef != wanted.search.ef
                {
                    actions.push(Action::TuneIndex { index: *wanted });
                }
            }
        }
    }
    (actions, drifts)
}

fn fmt_opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

/// `HNSW M=16 efConstruction=200 IP`, for reports.
pub fn describe_index(index: &ResolvedIndex) -> String {
    let mut s = format!("{} {}", index.kind, index.metric);
    for (name, value) in
        [("nlist", index.build.nlist), ("M", index.build.m), ("efConstruction", index.build.ef_construction)]
    {
        if let Some(v) = value {
            s.push_str(&format!(" {name}={v}"));
        }
    }
    if index.compression != Default::default() {
        s.push_str(&format!(" compression={:?}", index.compression));
    }
    s
}

/// The index `spec` asks for, given the rows the collection holds.
pub fn wanted_index(spec: &CollectionSpec, rows: Option<u64>) -> Result<ResolvedIndex> {
    spec.index.resolve(spec.metric, rows).map_err(|e| Error::invalid(format!("collection {}: {e}", spec.name)))
}

/// What `apply` would do for each spec. Changes nothing.
pub async fn plan<S: VectorStore>(store: &S, specs: &[CollectionSpec]) -> Result<Plan> {
    let backend = store.backend();
    let mut collections = Vec::new();
    for spec in specs {
        spec.validate(backend)?;
    }
    for spec in specs {
        let Some(observed) = store.describe(&spec.name).await? else {
            // What the server must offer (Weaviate's vectorizer modules), checked for every
            // spec before apply writes anything.
            store.preflight(spec).await?;
            let mut actions = vec![Action::Create];
            let index = wanted_index(spec, None)?;
            if backend == Backend::Milvus {
                actions.push(Action::CreateIndex { index });
                actions.push(Action::Load);
            }
            collections.push(CollectionPlan { collection: spec.name.clone(), exists: false, actions, drift: vec![] });
            continue;
        };
        let stats = store.stats(&spec.name).await?;
        let wanted = store.native_index(&wanted_index(spec, Some(stats.rows))?);
        let (mut actions, drift) = diff(backend, spec, &observed, stats.index.as_ref(), &wanted);
        if stats.load == LoadState::NotLoaded {
            actions.push(Action::Load);
        }
        // A collection that must be recreated is left entirely alone: building or loading
        // the wrong shape would only make it more used.
        if drift.iter().any(|d| d.needs == "recreate collection") {
            actions.clear();
        }
        collections.push(CollectionPlan { collection: spec.name.clone(), exists: true, actions, drift });
    }
    Ok(Plan { backend, collections })
}

/// What [`apply`] did.
#[derive(Clone, Debug, Serialize)]
pub struct ApplyReport {
    /// The plan it followed, with the drift it left alone.
    pub plan: Plan,
    /// What was done, in order.
    pub done: Vec<String>,
}

/// Creates what is missing, builds missing indexes, adds fields where the backend can, loads.
/// Never drops or rebuilds: drift is reported in the plan and left alone.
///
/// ```rust,no_run
/// use datastores::{MilvusConfig, Settings, Source};
/// use vector_admin::workflow::{self, Waits};
/// use vector_admin::{MilvusStore, builtin_milvus};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let settings = Settings::new().layer(Source::Environment, [("MILVUS_URI", "http://127.0.0.1:19530")]);
/// let store = MilvusStore::connect(&MilvusConfig::from_settings(&settings)?).await?;
/// let specs = builtin_milvus();
/// let report = workflow::apply(&store, &specs, &Waits::default(), &|what, done, total| {
///     eprintln!("{what}: {done} of {total}");
/// })
/// .await?;
/// for step in &report.done {
///     println!("{step}");
/// }
/// # Ok(())
/// # }
/// ```
pub async fn apply<S: VectorStore>(
    store: &S,
    specs: &[CollectionSpec],
    waits: &Waits,
    progress: Progress<'_>,
) -> Result<ApplyReport> {
    let plan = plan(store, specs).await?;
    let mut done = Vec::new();
    for (spec, collection) in specs.iter().zip(&plan.collections) {
        for action in &collection.actions {
            let name = &spec.name;
            match action {
                Action::Create => {
                    store.create(spec, &wanted_index(spec, None)?).await?;
                    done.push(format!("created {name}"));
                }
                Action::AddFields { fields } => {
                    let add: Vec<FieldSpec> =
                        spec.fields.iter().filter(|f| fields.contains(&f.name)).cloned().collect();
                    store.add_fields(name, &add).await?;
                    done.push(format!("added fields {} to {name}", fields.join(", ")));
                }
                Action::CreateIndex { index } | Action::TuneIndex { index } => {
                    store.create_index(name, spec, index).await?;
                    wait_for_index(store, name, waits, progress).await?;
                    done.push(format!("built index {} on {name}", describe_index(index)));
                }
                Action::Load => {
                    store.load(name).await?;
                    wait_for_load(store, name, waits, progress).await?;
                    done.push(format!("loaded {name}"));
                }
            }
        }
    }
    Ok(ApplyReport { plan, done })
}

/// Waits until the index of `name` is built. A build that fails, stalls for `waits.index_stall`
/// or outlives `waits.index_deadline` is an error that says how far it got.
pub async fn wait_for_index<S: VectorStore>(
    store: &S,
    name: &str,
    waits: &Waits,
    progress: Progress<'_>,
) -> Result<IndexInfo> {
    let started = Instant::now();
    let (mut last, mut moved) = (None, Instant::now());
    loop {
        let info = store
            .describe_index(name)
            .await?
            .ok_or_else(|| Error::server(store.backend(), "wait for index", format!("{name} has no index")))?;
        match &info.state {
            IndexState::Finished => return Ok(info),
            IndexState::Failed { reason } => {
                return Err(Error::server(store.backend(), format!("index build on {name}"), reason));
            }
            IndexState::Building { indexed, total } => {
                progress(&format!("building index on {name}"), *indexed, *total);
                if last != Some((*indexed, *total)) {
                    last = Some((*indexed, *total));
                    moved = Instant::now();
                }
                let state = format!("{indexed} of {total} rows indexed");
                if moved.elapsed() >= waits.index_stall {
                    let hint = if info.index.kind == crate::IndexKind::DiskAnn {
                        "; DISKANN needs a Milvus built with disk indexes (the standalone lite build has none): choose another preset"
                    } else {
                        "; check the index node's log"
                    };
                    return Err(Error::IndexStuck {
                        collection: name.into(),
                        progress: format!("{state}, no progress for {:?}", moved.elapsed()),
                        hint: hint.into(),
                    });
                }
                if started.elapsed() >= waits.index_deadline {
                    return Err(Error::Timeout {
                        what: format!("index build on {name}"),
                        waited: started.elapsed(),
                        progress: state,
                    });
                }
            }
        }
        tokio::time::sleep(waits.poll).await;
    }
}

/// Waits until `name` is loaded.
pub async fn wait_for_load<S: VectorStore>(store: &S, name: &str, waits: &Waits, progress: Progress<'_>) -> Result<()> {
    let started = Instant::now();
    loop {
        match store.load_state(name).await? {
            LoadState::Loaded => return Ok(()),
            LoadState::Loading(p) => progress(&format!("loading {name}"), p.into(), 100),
            LoadState::NotLoaded => progress(&format!("loading {name}"), 0, 100),
        }
        if started.elapsed() >= waits.load_deadline {
            return Err(Error::Timeout {
                what: format!("load of {name}"),
                waited: started.elapsed(),
                progress: format!("{:?}", store.load_state(name).await?),
            });
        }
        tokio::time::sleep(waits.poll).await;
    }
}

/// Replaces the index of a collection: release, drop, create, wait, load. Milvus allows one
/// index per field and refuses to drop the index of a loaded collection, so there is no other
/// way; searches fail from the release until the load. Needs `consent`.
pub async fn replace_index<S: VectorStore>(
    store: &S,
    spec: &CollectionSpec,
    index: &ResolvedIndex,
    consent: bool,
    waits: &Waits,
    progress: Progress<'_>,
) -> Result<Vec<String>> {
    let name = &spec.name;
    index.build.validate(index.kind)?;
    let current = store.describe_index(name).await?;
    if current.is_none() {
        store.create_index(name, spec, index).await?;
        wait_for_index(store, name, waits, progress).await?;
        store.load(name).await?;
        wait_for_load(store, name, waits, progress).await?;
        return Ok(vec![format!("built index {} on {name}", describe_index(index)), format!("loaded {name}")]);
    }
    if store.backend() == Backend::Weaviate {
        return Err(Error::Unsupported {
            backend: Backend::Weaviate,
            what: format!("rebuilding the index of {name}"),
            why: "a class's index type, distance, maxConnections and efConstruction never change: drop the class (vector-admin drop NAME --yes) and run init".into(),
        });
    }
    if !consent {
        return Err(Error::NeedsConsent(format!(
            "{name} already has an index; replacing it releases the collection (searches fail until it is loaded again), drops the index and builds {}: pass --replace",
            describe_index(index)
        )));
    }
    let mut steps = Vec::new();
    let outcome = async {
        if store.load_state(name).await? != LoadState::NotLoaded {
            store.release(name).await?;
            steps.push(format!("released {name}"));
        }
        store.drop_index(name).await?;
        steps.push(format!("dropped the index of {name}"));
        store.create_index(name, spec, index).await?;
        steps.push(format!("created index {} on {name}", describe_index(index)));
        wait_for_index(store, name, waits, progress).await?;
        steps.push(format!("index on {name} built"));
        store.load(name).await?;
        wait_for_load(store, name, waits, progress).await?;
        steps.push(format!("loaded {name}"));
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(steps),
        // Part-way, the collection is released and perhaps without an index: say where it is.
        Err(e) if !steps.is_empty() => Err(Error::Interrupted {
            done: steps.join("; "),
            next: format!("run `vector-admin index create {name}` again to finish, then check `vector-admin health`"),
            source: Box::new(e),
        }),
        Err(e) => Err(e),
    }
}

/// Drops a collection and all its rows, only with `consent`.
pub async fn drop_collection<S: VectorStore>(store: &S, name: &str, consent: bool) -> Result<u64> {
    let stats = match store.stats(name).await {
        Ok(s) => s,
        Err(Error::NotFound { .. }) if store.describe(name).await?.is_none() => {
            return Err(Error::NotFound { backend: store.backend(), collection: name.into() });
        }
        Err(e) => return Err(e),
    };
    if !consent {
        return Err(Error::NeedsConsent(format!(
            "dropping {name} deletes its {} rows and its index: pass --yes",
            stats.rows
        )));
    }
    store.drop_collection(name).await?;
    Ok(stats.rows)
}

/// Compacts a collection and waits for it.
pub async fn compact<S: VectorStore>(
    store: &S,
    name: &str,
    waits: &Waits,
    progress: Progress<'_>,
) -> Result<CompactionReport> {
    let before = store.stats(name).await?.shards.len();
    let Some(id) = store.start_compaction(name).await? else {
        return Ok(CompactionReport {
            collection: name.into(),
            applicable: false,
            completed: true,
            plans: 0,
            segments_before: before,
            segments_after: before,
        });
    };
    let started = Instant::now();
    loop {
        let (done, plans, failed) = store.compaction_done(id).await?;
        if done && failed > 0 {
            return Err(Error::server(
                store.backend(),
                format!("compaction {id} of {name}"),
                format!("{failed} plan(s) failed or timed out, {plans} completed"),
            ));
        }
        if done {
            let after = store.stats(name).await?.shards.len();
            return Ok(CompactionReport {
                collection: name.into(),
                applicable: true,
                completed: true,
                plans,
                segments_before: before,
                segments_after: after,
            });
        }
        progress(&format!("compacting {name}"), plans, 0);
        if started.elapsed() >= waits.compaction_deadline {
            return Err(Error::Timeout {
                what: format!("compaction {id} of {name}"),
                waited: started.elapsed(),
                progress: format!("{plans} plans completed"),
            });
        }
        tokio::time::sleep(waits.poll).await;
    }
}

/// Writes `batch` in batches of `batch_size` rows; returns the rows written.
pub async fn write_batches<S: VectorStore>(
    store: &S,
    spec: &CollectionSpec,
    batch: &Batch,
    batch_size: usize,
    upsert: bool,
) -> Result<usize> {
    batch.check(spec)?;
    let mut written = 0;
    for from in (0..batch.rows()).step_by(batch_size.max(1)) {
        let part = batch.slice(from, (from + batch_size.max(1)).min(batch.rows()));
        written += if upsert { store.upsert(spec, &part).await? } else { store.insert(spec, &part).await? };
    }
    Ok(written)
}

/// One collection in a [`HealthReport`].
#[derive(Clone, Debug, Serialize)]
pub struct CollectionHealth {
    /// The collection or class name.
    pub collection: String,
    /// Whether the server has it.
    pub exists: bool,
    /// Named by a spec (the seeds' collections or a spec file), or found on the server.
    pub managed: bool,
    /// Rows, as [`Stats::rows`](crate::Stats::rows) counts them (0 when missing).
    pub rows: u64,
    /// The index and its build state.
    pub index: Option<IndexInfo>,
    /// The load state, `None` when the collection is missing.
    pub load: Option<LoadState>,
    /// The number of segments (Milvus) or shards (Weaviate).
    pub shards: usize,
    /// What is wrong: missing, no index, index building or failed, not loaded. Empty when fine.
    pub problems: Vec<String>,
}

/// What [`health`] found.
#[derive(Clone, Debug, Serialize)]
pub struct HealthReport {
    /// The server's version and health.
    pub server: ServerInfo,
    /// The collections asked about.
    pub collections: Vec<CollectionHealth>,
    /// The server is healthy and no managed collection has a problem.
    pub healthy: bool,
}

/// The server's version and state; per collection (those of `specs`, and with `all` every other
/// one on the server): exists, rows, index and build progress, loaded.
pub async fn health<S: VectorStore>(store: &S, specs: &[CollectionSpec], all: bool) -> Result<HealthReport> {
    let server = store.server().await?;
    let mut names: Vec<(String, bool)> = specs.iter().map(|s| (s.name.clone(), true)).collect();
    if all {
        for name in store.list().await? {
            if !names.iter().any(|(n, _)| n == &name) {
                names.push((name, false));
            }
        }
    }
    let mut collections = Vec::new();
    for (name, managed) in names {
        let stats = match store.stats(&name).await {
            Ok(s) => s,
            // An unmanaged collection dropped since the listing is simply gone.
            Err(Error::NotFound { .. }) if !managed => continue,
            Err(Error::NotFound { .. }) => {
                collections.push(CollectionHealth {
                    collection: name,
                    exists: false,
                    managed,
                    rows: 0,
                    index: None,
                    load: None,
                    shards: 0,
                    problems: vec!["does not exist: run vector-admin init".into()],
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        match &stats.index {
            None => problems.push("has no index".into()),
            Some(IndexInfo { state: IndexState::Failed { reason }, .. }) => {
                problems.push(format!("index build failed: {reason}"))
            }
            Some(IndexInfo { state: IndexState::Building { indexed, total }, .. }) => {
                problems.push(format!("index building: {indexed} of {total} rows"))
            }
            Some(_) => {}
        }
        if stats.load != LoadState::Loaded {
            problems.push(format!("not loaded ({:?})", stats.load));
        }
        collections.push(CollectionHealth {
            collection: name,
            exists: true,
            managed,
            rows: stats.rows,
            index: stats.index,
            load: Some(stats.load),
            shards: stats.shards.len(),
            problems,
        });
    }
    let healthy = server.healthy && collections.iter().all(|c| !c.managed || c.problems.is_empty());
    Ok(HealthReport { server, collections, healthy })
}

/// One step of [`maintain`].
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The step: `health`, `flush`, `compact NAME`, `index NAME`, `load NAME`, `health after`.
    pub step: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Its report as JSON, or the error message as a string when it failed.
    pub detail: serde_json::Value,
}

/// What [`maintain`] did, step by step.
#[derive(Clone, Debug, Serialize)]
pub struct MaintainReport {
    /// The backend maintained.
    pub backend: Backend,
    /// Every step, in order, failed ones too.
    pub steps: Vec<Step>,
    /// Whether every step succeeded.
    pub ok: bool,
}

/// The seed's maintenance routine: health, flush every collection, compact each, check its
/// index, make sure it is loaded. Every step runs and is reported even when an earlier one
/// failed; `ok` is false when any did.
pub async fn maintain<S: VectorStore>(
    store: &S,
    specs: &[CollectionSpec],
    waits: &Waits,
    progress: Progress<'_>,
) -> Result<MaintainReport> {
    let mut steps = Vec::new();
    let mut step = |name: String, outcome: Result<serde_json::Value>| {
        let (ok, detail) = match outcome {
            Ok(v) => (true, v),
            Err(e) => (false, serde_json::Value::String(e.to_string())),
        };
        steps.push(Step { step: name, ok, detail });
    };
    let health_report = health(store, specs, false).await;
    let existing: Vec<String> = match &health_report {
        Ok(h) => h.collections.iter().filter(|c| c.exists).map(|c| c.collection.clone()).collect(),
        Err(_) => Vec::new(),
    };
    let healthy = health_report.as_ref().map(|h| h.server.healthy).unwrap_or(false);
    let missing: Vec<String> = match &health_report {
        Ok(h) => h.collections.iter().filter(|c| !c.exists).map(|c| c.collection.clone()).collect(),
        Err(_) => Vec::new(),
    };
    step("health".into(), health_report.and_then(|h| to_json(&h)));
    if !healthy {
        return Ok(MaintainReport { backend: store.backend(), ok: false, steps });
    }
    for name in missing {
        step(format!("exists {name}"), Err(Error::NotFound { backend: store.backend(), collection: name }));
    }
    step("flush".into(), store.flush(&existing).await.and_then(|r| to_json(&r)));
    for name in &existing {
        step(format!("compact {name}"), compact(store, name, waits, progress).await.and_then(|r| to_json(&r)));
        let index = match store.describe_index(name).await {
            Ok(Some(info)) if !matches!(info.state, IndexState::Failed { .. }) => to_json(&info),
            Ok(Some(info)) => {
                Err(Error::server(store.backend(), format!("index of {name}"), format!("{:?}", info.state)))
            }
            Ok(None) => {
                Err(Error::server(store.backend(), format!("index of {name}"), "missing: run vector-admin init"))
            }
            Err(e) => Err(e),
        };
        step(format!("index {name}"), index);
        let load = async {
            if store.load_state(name).await? != LoadState::Loaded {
                store.load(name).await?;
                wait_for_load(store, name, waits, progress).await?;
                return Ok(serde_json::json!("loaded now"));
            }
            Ok(serde_json::json!("loaded"))
        };
        step(format!("load {name}"), load.await);
    }
    // The end state is what a CronJob alerts on: a collection still unloaded, an index still
    // building or failed.
    let after = health(store, specs, false).await.and_then(|h| {
        let problems: Vec<String> = h
            .collections
            .iter()
            .filter(|c| c.exists)
            .flat_map(|c| c.problems.iter().map(move |p| format!("{}: {p}", c.collection)))
            .collect();
        match problems.is_empty() && h.server.healthy {
            true => to_json(&h),
            false => Err(Error::server(store.backend(), "health after maintenance", problems.join("; "))),
        }
    });
    step("health after".into(), after);
    let ok = steps.iter().all(|s| s.ok);
    Ok(MaintainReport { backend: store.backend(), steps, ok })
}

fn to_json<T: Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::builtin_milvus;

    #[test]
    fn an_identical_collection_needs_nothing() {
        let spec = builtin_milvus().remove(0);
        let index = wanted_index(&spec, Some(10)).unwrap();
        let info = IndexInfo { index, state: IndexState::Finished };
        let (actions, drifts) = diff(Backend::Milvus, &spec, &spec, Some(&info), &index);
        assert!(actions.is_empty() && drifts.is_empty(), "{actions:?} {drifts:?}");
    }

    #[test]
    fn dimension_metric_and_fields_are_drift_not_changes() {
        let spec = builtin_milvus().remove(0);
        let mut observed = spec.clone();
        observed.dim = Some(128);
        observed.fields.retain(|f| f.name != "status");
        observed.fields.push(FieldSpec::new("legacy", crate::FieldKind::Int64));
        let wanted = wanted_index(&spec, Some(10)).unwrap();
        let mut have = wanted;
        have.metric = crate::Metric::L2;
        let info = IndexInfo { index: have, state: IndexState::Finished };
        let (actions, drifts) = diff(Backend::Milvus, &spec, &observed, Some(&info), &wanted);
        assert!(actions.is_empty(), "{actions:?}");
        let whats: Vec<&str> = drifts.iter().map(|d| d.what.as_str()).collect();
        assert_eq!(whats, ["dimension", "field legacy", "fields", "metric"]);
        assert_eq!(drifts[1].needs, "none");
        // Weaviate adds missing properties in place.
        let (actions, _) = diff(Backend::Weaviate, &spec, &observed, Some(&info), &wanted);
        assert_eq!(actions, [Action::AddFields { fields: vec!["status".into()] }]);
    }

    #[test]
    fn a_named_preset_that_differs_needs_a_rebuild() {
        let mut spec = builtin_milvus().remove(0);
        spec.index.preset = PresetChoice::Named(crate::Preset::HighRecall);
        let wanted = wanted_index(&spec, Some(10)).unwrap();
        let mut have = wanted;
        have.build.m = Some(16);
        let info = IndexInfo { index: have, state: IndexState::Finished };
        let (_, drifts) = diff(Backend::Milvus, &spec, &spec, Some(&info), &wanted);
        assert_eq!(drifts.len(), 1);
        assert_eq!(drifts[0].needs, "rebuild index");
        assert!(drifts[0].server.contains("M=16") && drifts[0].spec.contains("M=32"), "{drifts:?}");
    }
}
