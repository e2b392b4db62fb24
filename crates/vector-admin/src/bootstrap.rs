//! The `weaviate` and `milvus` sections of the platform's bootstrap manifest
//! (`datastores::bootstrap`): vector-admin specs, planned and applied with the same workflow as
//! `vector-admin plan|apply`, reported in the manifest's terms.

use datastores::bootstrap::{Item, Mode, SectionReport, State};
use datastores::{Datastore, MilvusConfig, WeaviateConfig};
use serde::Deserialize;

use crate::spec::{Defaults, SpecFile};
use crate::store::VectorStore;
use crate::workflow::{self, Action, Waits};
use crate::{Backend, Error, MilvusStore, WeaviateStore};

/// A vector section: `{ defaults: extend|replace, classes: [...] }` for Weaviate,
/// `{ defaults: ..., collections: [...] }` for Milvus; entries as in a spec file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VectorSection {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    classes: Option<Vec<std::collections::BTreeMap<String, serde_json::Value>>>,
    #[serde(default)]
    collections: Option<Vec<std::collections::BTreeMap<String, serde_json::Value>>>,
}

/// Parses a manifest's vector section into the specs for `backend` (the built-ins with the
/// section applied), each validated.
pub fn section_specs(section: &serde_json::Value, backend: Backend) -> crate::Result<Vec<crate::CollectionSpec>> {
    let key = match backend {
        Backend::Weaviate => "classes",
        Backend::Milvus => "collections",
    };
    let parsed: VectorSection = serde_json::from_value(section.clone())
        .map_err(|e| Error::invalid(format!("manifest section {backend}: {e}")))?;
    let (entries, other) = match backend {
        Backend::Weaviate => (parsed.classes, parsed.collections),
        Backend::Milvus => (parsed.collections, parsed.classes),
    };
    if other.is_some() {
        return Err(Error::invalid(format!("manifest section {backend}: its entries go under {key}")));
    }
    let mut file = SpecFile { defaults: parsed.defaults, ..SpecFile::default() };
    match backend {
        Backend::Weaviate => file.weaviate = entries.unwrap_or_default(),
        Backend::Milvus => file.milvus = entries.unwrap_or_default(),
    }
    file.specs(backend)
}

/// Plans, checks or applies a manifest's `weaviate` section.
pub async fn weaviate(config: &WeaviateConfig, section: &serde_json::Value, mode: Mode) -> SectionReport {
    let report = SectionReport::new(Datastore::Weaviate, config.to_string(), mode);
    let specs = match section_specs(section, Backend::Weaviate) {
        Ok(s) => s,
        Err(e) => return report.failed(e.to_string()),
    };
    match WeaviateStore::connect(config) {
        Ok(store) => run(&store, &specs, mode, report, "class").await,
        Err(e) => report.failed(e.to_string()),
    }
}

/// Plans, checks or applies a manifest's `milvus` section.
pub async fn milvus(config: &MilvusConfig, section: &serde_json::Value, mode: Mode) -> SectionReport {
    let report = SectionReport::new(Datastore::Milvus, config.to_string(), mode);
    let specs = match section_specs(section, Backend::Milvus) {
        Ok(s) => s,
        Err(e) => return report.failed(e.to_string()),
    };
    match MilvusStore::connect(config).await {
        Ok(store) => run(&store, &specs, mode, report, "collection").await,
        Err(e) => report.failed(e.to_string()),
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Create => "create".into(),
        Action::AddFields { fields } => format!("add fields {}", fields.join(", ")),
        Action::CreateIndex { index } => format!("build index {}", workflow::describe_index(index)),
        Action::TuneIndex { index } => format!("tune index to {}", workflow::describe_index(index)),
        Action::Load => "load".into(),
    }
}

async fn run<S: VectorStore>(
    store: &S,
    specs: &[crate::CollectionSpec],
    mode: Mode,
    mut report: SectionReport,
    kind: &'static str,
) -> SectionReport {
    match store.server().await {
        Ok(info) => report.identity = Some(format!("version {}", info.version)),
        Err(e) => return report.failed(e.to_string()),
    }
    let plan = if mode.writes() {
        let quiet = |_: &str, _: u64, _: u64| {};
        match workflow::apply(store, specs, &Waits::default(), &quiet).await {
            Ok(applied) => applied.plan,
            Err(e) => return report.failed(e.to_string()),
        }
    } else {
        match workflow::plan(store, specs).await {
            Ok(p) => p,
            Err(e) => return report.failed(e.to_string()),
        }
    };
    for collection in &plan.collections {
        let name = &collection.collection;
        if collection.actions.is_empty() {
            report.push(Item::ok(kind, name));
        } else {
            let state = datastores::bootstrap::converge_state(mode, !collection.exists);
            let detail = collection.actions.iter().map(describe).collect::<Vec<_>>().join(", ");
            report.push(Item::new(kind, name, state, detail));
        }
        for drift in &collection.drift {
            let what = format!("{name}.{}", drift.what);
            let detail = format!("server {}, manifest {}", drift.server, drift.spec);
            if drift.needs == "none" {
                report.warnings.push(format!("{what}: {detail} (left alone)"));
            } else {
                report.push(Item::new(
                    kind,
                    what,
                    State::Conflict,
                    format!("{detail}; needs {}, which apply does not do", drift.needs),
                ));
            }
        }
    }
    report
}
