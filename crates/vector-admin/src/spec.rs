//! Collection specs: the seeds' built-in collections and classes, and YAML files that replace or
//! extend them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::preset::{BuildParams, Compression, IndexKind, Metric, PresetChoice, SearchParams, auto_preset};

/// Scalar field types both backends can hold, plus what only one has.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldKind {
    /// `bool`: Milvus `Bool`, Weaviate `boolean`.
    Bool,
    /// `int32`: Milvus `Int32`, Weaviate `int`.
    Int32,
    /// `int64`: Milvus `Int64` (also a key type), Weaviate `int`.
    Int64,
    /// `float`: Milvus `Float`, Weaviate `number`.
    Float,
    /// `double`: Milvus `Double`, Weaviate `number`.
    Double,
    /// Milvus `VarChar` (needs `max_length`).
    Varchar,
    /// `json`: Milvus `JSON`; Weaviate has no such type and refuses it.
    Json,
    /// Weaviate `text` (tokenised, searchable).
    Text,
    /// Weaviate `blob` (base64 data, such as an image for img2vec-neural).
    Blob,
    /// A type this tool does not manage, as the server reported it.
    #[serde(untagged)]
    Other(String),
}

/// A scalar field of a collection (a property of a Weaviate class).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldSpec {
    /// The field name: a letter or `_`, then letters, digits and `_`.
    pub name: String,
    /// The field type (`type` in spec files).
    #[serde(rename = "type")]
    pub kind: FieldKind,
    /// The maximum length in bytes of a `varchar`, 1..=65535; required for `varchar` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A description stored with the field on the server (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl FieldSpec {
    /// A field without description; a `varchar` gets `max_length` 256.
    pub fn new(name: &str, kind: FieldKind) -> FieldSpec {
        let max_length = (kind == FieldKind::Varchar).then_some(256);
        FieldSpec { name: name.into(), kind, max_length, description: String::new() }
    }

    fn described(mut self, description: &str) -> FieldSpec {
        self.description = description.into();
        self
    }

    fn max(mut self, max_length: u32) -> FieldSpec {
        self.max_length = Some(max_length);
        self
    }
}

/// A Weaviate vectorizer module, or `none`: the caller supplies the vectors.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vectorizer {
    /// `none`: no module; vectors come with the objects and the spec needs a `dim`.
    None,
    /// A module by name (`text2vec-transformers`, `img2vec-neural`, ...). `image_fields` names the
    /// blob properties img2vec-neural reads.
    #[serde(untagged)]
    Module {
        /// The module's name as Weaviate knows it.
        module: String,
        /// For img2vec-neural: the blob properties holding the images (`imageFields`).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        image_fields: Vec<String>,
    },
}

/// Read consistency of a Milvus collection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Consistency {
    /// A search sees every write made before it.
    Strong,
    /// A search sees the writes of its own client.
    Session,
    /// A search may miss the latest writes, within a bounded staleness (the default).
    #[default]
    Bounded,
    /// No guarantee; the fastest.
    Eventually,
}

/// Which index a collection gets: a preset (or `auto` by row count) and overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexSpec {
    /// The preset, `auto` by default.
    #[serde(default)]
    pub preset: PresetChoice,
    /// Build parameters that override the preset's.
    #[serde(default, skip_serializing_if = "is_default")]
    pub build: BuildParams,
    /// Search parameters that override the preset's.
    #[serde(default, skip_serializing_if = "is_default")]
    pub search: SearchParams,
    /// Vector compression (Weaviate), none by default.
    #[serde(default, skip_serializing_if = "is_default")]
    pub compression: Compression,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// An index with every parameter decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ResolvedIndex {
    /// The index structure.
    pub kind: IndexKind,
    /// The similarity metric.
    pub metric: Metric,
    /// Build parameters; those the kind does not use are `None`.
    pub build: BuildParams,
    /// Default search parameters for this index.
    pub search: SearchParams,
    /// Vector compression (Weaviate).
    pub compression: Compression,
}

impl IndexSpec {
    /// The preset's parameters for about `rows` rows, with this spec's overrides on top, checked.
    pub fn resolve(&self, metric: Metric, rows: Option<u64>) -> Result<ResolvedIndex> {
        let preset = match self.preset {
            PresetChoice::Named(p) => p,
            PresetChoice::Auto => auto_preset(rows.unwrap_or(0)),
        };
        let (build, search) = preset.params(rows);
        let (build, search) = (build.overlay(self.build), search.overlay(self.search));
        build.validate(preset.kind())?;
        crate::preset::validate_search(preset.kind(), &build, &search, 1)?;
        Ok(ResolvedIndex { kind: preset.kind(), metric, build, search, compression: self.compression })
    }
}

/// The desired state of one collection (Milvus) or class (Weaviate).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionSpec {
    /// The collection or class name: a letter or `_`, then letters, digits and `_`; a Weaviate
    /// class starts with an upper-case letter.
    pub name: String,
    /// A description stored on the server (empty: none).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// The primary key field (Milvus); Weaviate keys objects by UUID and ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<FieldSpec>,
    /// The scalar fields, besides the key and the vector.
    #[serde(default)]
    pub fields: Vec<FieldSpec>,
    /// The name of the float vector field, `embedding` by default.
    #[serde(default = "default_vector_field")]
    pub vector_field: String,
    /// The vector dimension; on Weaviate with a vectorizer the module decides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<u32>,
    /// How vectors are compared (required).
    pub metric: Metric,
    /// The index: a preset (`auto` by default) and overrides.
    #[serde(default)]
    pub index: IndexSpec,
    /// Shards, 1..=64 (default 1).
    #[serde(default = "one")]
    pub shards: u32,
    /// Replicas, 1..=16 (default 1).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Milvus' read consistency, `bounded` by default.
    #[serde(default)]
    pub consistency: Consistency,
    /// Milvus' collection TTL (`collection.ttl.seconds`): rows older than this expire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds: Option<u64>,
    /// Weaviate's vectorizer module, `none` by default (Milvus needs `none`).
    #[serde(default = "no_vectorizer")]
    pub vectorizer: Vectorizer,
}

fn default_vector_field() -> String {
    "embedding".into()
}
fn one() -> u32 {
    1
}
fn no_vectorizer() -> Vectorizer {
    Vectorizer::None
}

impl CollectionSpec {
    /// A Milvus collection with a VarChar key and a float vector field `embedding`.
    pub fn new(name: &str, key: &str, dim: u32, metric: Metric) -> CollectionSpec {
        CollectionSpec {
            name: name.into(),
            description: String::new(),
            key: Some(FieldSpec::new(key, FieldKind::Varchar).max(64)),
            fields: Vec::new(),
            vector_field: default_vector_field(),
            dim: Some(dim),
            metric,
            index: IndexSpec::default(),
            shards: 1,
            replicas: 1,
            consistency: Consistency::Bounded,
            ttl_seconds: None,
            vectorizer: Vectorizer::None,
        }
    }

    /// Checks what can be checked without a server: names, dimension, field types, the index.
    pub fn validate(&self, backend: crate::Backend) -> Result<()> {
        let bad = |why: String| Err(Error::invalid(format!("collection {}: {why}", self.name)));
        let name_ok = |n: &str| {
            !n.is_empty()
                && n.len() <= 255
                && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        };
        if !name_ok(&self.name) {
            return bad("a name starts with a letter or _ and holds only letters, digits and _".into());
        }
        match (backend, self.dim) {
            (_, Some(d)) if d == 0 || d > 32_768 => return bad(format!("dimension {d} is out of range 1..=32768")),
            (crate::Backend::Milvus, None) => return bad("a Milvus collection needs a dimension (dim)".into()),
            (crate::Backend::Weaviate, None) if self.vectorizer == Vectorizer::None => {
                return bad("vectorizer none needs a dimension (dim): the caller supplies the vectors".into());
            }
            _ => {}
        }
        let mut seen = std::collections::BTreeSet::new();
        for field in self.key.iter().chain(&self.fields) {
            if !name_ok(&field.name) || field.name == self.vector_field {
                return bad(format!("field name {:?} is not allowed", field.name));
            }
            if !seen.insert(field.name.as_str()) {
                return bad(format!("field {} appears twice", field.name));
            }
            match (&field.kind, backend) {
                (FieldKind::Varchar, _) if !matches!(field.max_length, Some(1..=65_535)) => {
                    return bad(format!("varchar field {} needs max_length within 1..=65535", field.name));
                }
                (FieldKind::Text | FieldKind::Blob, crate::Backend::Milvus) => {
                    return bad(format!("field {}: {:?} is a Weaviate type; use varchar", field.name, field.kind));
                }
                (FieldKind::Other(t), _) => return bad(format!("field {}: unknown type {t}", field.name)),
                _ => {}
            }
        }
        if backend == crate::Backend::Weaviate {
            if !self.name.starts_with(|c: char| c.is_ascii_uppercase()) {
                return bad("a Weaviate class name starts with an upper-case letter".into());
            }
            if let Some(f) = self.fields.iter().find(|f| f.kind == FieldKind::Json) {
                return bad(format!("field {}: Weaviate has no json property type", f.name));
            }
        }
        if backend == crate::Backend::Milvus {
            match &self.key {
                Some(FieldSpec { kind: FieldKind::Varchar | FieldKind::Int64, .. }) => {}
                Some(k) => return bad(format!("key {} must be varchar or int64", k.name)),
                None => return bad("a Milvus collection needs a key field".into()),
            }
            if self.vectorizer != Vectorizer::None {
                return bad("Milvus has no vectorizer modules; set vectorizer: none".into());
            }
        }
        if let Vectorizer::Module { module, image_fields } = &self.vectorizer
            && module == "img2vec-neural"
        {
            if image_fields.is_empty() {
                return bad("img2vec-neural needs image_fields naming blob properties".into());
            }
            for f in image_fields {
                if !self.fields.iter().any(|p| &p.name == f && p.kind == FieldKind::Blob) {
                    return bad(format!("image field {f} must be a blob property of the class"));
                }
            }
        }
        if self.shards == 0 || self.shards > 64 || self.replicas == 0 || self.replicas > 16 {
            return bad("shards must be within 1..=64 and replicas within 1..=16".into());
        }
        self.index.resolve(self.metric, None).map_err(|e| Error::invalid(format!("collection {}: {e}", self.name)))?;
        Ok(())
    }

    /// The spec with vectorizer `none` (the caller supplies vectors), keeping everything else.
    pub fn without_vectorizer(mut self, dim: u32) -> CollectionSpec {
        self.vectorizer = Vectorizer::None;
        self.dim = Some(dim);
        self
    }
}

/// Seed 000's Milvus collections: float vectors of dim 256 compared by inner product (the seed's
/// `MetricType.IP`), a VarChar key, and the scalars a recommendation service filters and syncs on.
pub fn builtin_milvus() -> Vec<CollectionSpec> {
    let updated = FieldSpec::new("updated_at", FieldKind::Int64).described("unix seconds of the last write, for sync");
    let mut items = CollectionSpec::new("item_embeddings", "item_id", 256, Metric::Ip);
    items.description = "item embeddings for candidate retrieval".into();
    items.fields = vec![
        FieldSpec::new("category", FieldKind::Varchar).max(64).described("item category, for filtered search"),
        FieldSpec::new("status", FieldKind::Int32).described("1 active, 0 hidden"),
        updated.clone(),
    ];
    let mut users = CollectionSpec::new("user_embeddings", "user_id", 256, Metric::Ip);
    users.description = "user embeddings for personalised retrieval".into();
    users.fields = vec![FieldSpec::new("segment", FieldKind::Varchar).max(64), updated];
    let mut cache = CollectionSpec::new("query_cache", "query_id", 256, Metric::Ip);
    cache.description = "embeddings of recent queries; rows expire after a day".into();
    cache.fields = vec![
        FieldSpec::new("query_text", FieldKind::Varchar).max(1024),
        FieldSpec::new("created_at", FieldKind::Int64).described("unix seconds"),
    ];
    cache.ttl_seconds = Some(86_400);
    cache.consistency = Consistency::Session;
    vec![items, users, cache]
}

/// Seed 003's Weaviate classes with their vectorizers. The Image class gets a blob property
/// `image`: img2vec-neural refuses a class without one named in `imageFields`.
pub fn builtin_weaviate() -> Vec<CollectionSpec> {
    let text = |name: &str, description: &str| FieldSpec::new(name, FieldKind::Text).described(description);
    let class = |name: &str, description: &str, fields: Vec<FieldSpec>, vectorizer: Vectorizer| CollectionSpec {
        name: name.into(),
        description: description.into(),
        key: None,
        fields,
        vector_field: default_vector_field(),
        dim: None,
        metric: Metric::Cosine,
        index: IndexSpec { preset: PresetChoice::Named(crate::Preset::LargeHnsw), ..IndexSpec::default() },
        shards: 1,
        replicas: 1,
        consistency: Consistency::default(),
        ttl_seconds: None,
        vectorizer,
    };
    vec![
        class(
            "Document",
            "A document with vector representation for semantic search",
            vec![
                text("title", "The title of the document"),
                text("content", "The content of the document"),
                text("source", "Source of the document"),
            ],
            Vectorizer::Module { module: "text2vec-transformers".into(), image_fields: vec![] },
        ),
        class(
            "Image",
            "Images with vector embeddings",
            vec![
                text("filename", "The filename of the image"),
                text("caption", "Caption or description of the image"),
                FieldSpec::new("image", FieldKind::Blob).described("The image, base64-encoded"),
            ],
            Vectorizer::Module { module: "img2vec-neural".into(), image_fields: vec!["image".into()] },
        ),
    ]
}

/// A YAML spec file. By default its entries extend the built-in collections: an entry with a
/// built-in's name changes only what it sets (a field with an existing name replaces it, others
/// are added); another name adds a collection, which then must be complete. `defaults: replace`
/// drops the built-ins.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// `extend` (the default) or `replace` the built-in collections.
    #[serde(default)]
    pub defaults: Defaults,
    /// Milvus collection entries, as written (each needs a `name`).
    #[serde(default)]
    pub milvus: Vec<BTreeMap<String, serde_json::Value>>,
    /// Weaviate class entries, as written (each needs a `name`).
    #[serde(default)]
    pub weaviate: Vec<BTreeMap<String, serde_json::Value>>,
}

/// What a spec file does with the built-in collections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Defaults {
    /// Entries change or add to the built-ins.
    #[default]
    Extend,
    /// Only the file's entries count.
    Replace,
}

impl SpecFile {
    /// Parses a spec file's YAML; `origin` (its path) prefixes the error. Unknown keys at the top
    /// are refused; the entries are checked by [`SpecFile::specs`].
    ///
    /// ```rust
    /// use vector_admin::{Backend, Metric, SpecFile};
    ///
    /// let file = SpecFile::parse(
    ///     r#"
    /// milvus:
    ///   - name: item_embeddings        # a built-in: only what is set changes
    ///     index: { preset: high_recall }
    ///   - name: news_embeddings        # a new collection: complete
    ///     key: { name: news_id, type: int64 }
    ///     dim: 384
    ///     metric: COSINE
    /// "#,
    ///     "specs.yaml",
    /// )?;
    /// let specs = file.specs(Backend::Milvus)?;
    /// let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    /// assert_eq!(names, ["user_embeddings", "query_cache", "item_embeddings", "news_embeddings"]);
    /// assert!(specs.iter().any(|s| s.name == "item_embeddings" && s.dim == Some(256)));
    /// assert!(specs.iter().any(|s| s.name == "news_embeddings" && s.metric == Metric::Cosine));
    ///
    /// // Checked before anything is sent: a Milvus collection needs a dimension.
    /// let file = SpecFile::parse("milvus: [{name: bad, key: {name: id, type: int64}, metric: L2}]", "bad.yaml")?;
    /// assert!(file.specs(Backend::Milvus).unwrap_err().to_string().contains("needs a dimension"));
    /// # Ok::<(), vector_admin::Error>(())
    /// ```
    pub fn parse(text: &str, origin: &str) -> Result<SpecFile> {
        serde_norway::from_str(text).map_err(|e| Error::invalid(format!("{origin}: {e}")))
    }

    /// Reads and parses the spec file at `path`. Errors name the path.
    pub fn load(path: &Path) -> Result<SpecFile> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::invalid(format!("cannot read spec file {}: {e}", path.display())))?;
        SpecFile::parse(&text, &path.display().to_string())
    }

    /// The specs for `backend`: the built-ins with this file applied, each validated.
    pub fn specs(&self, backend: crate::Backend) -> Result<Vec<CollectionSpec>> {
        let (mut specs, entries) = match backend {
            crate::Backend::Milvus => (builtin_milvus(), &self.milvus),
            crate::Backend::Weaviate => (builtin_weaviate(), &self.weaviate),
        };
        if self.defaults == Defaults::Replace {
            specs.clear();
        }
        for entry in entries {
            let name = entry
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| Error::invalid(format!("a {backend} entry of the spec file has no name")))?;
            let merged = match specs.iter().position(|s| s.name == name) {
                Some(i) => {
                    let mut base = serde_json::to_value(&specs[i]).map_err(|e| Error::invalid(e.to_string()))?;
                    merge(&mut base, entry)?;
                    specs.remove(i);
                    base
                }
                None => serde_json::Value::Object(entry.clone().into_iter().collect()),
            };
            let spec: CollectionSpec = serde_json::from_value(merged)
                .map_err(|e| Error::invalid(format!("{backend} collection {name} in the spec file: {e}")))?;
            specs.push(spec);
        }
        for spec in &specs {
            spec.validate(backend)?;
        }
        Ok(specs)
    }
}

/// Applies an entry to a built-in: scalars and objects replace, `fields` merge by name.
fn merge(base: &mut serde_json::Value, entry: &BTreeMap<String, serde_json::Value>) -> Result<()> {
    for (key, value) in entry {
        if key == "fields" {
            let list = value.as_array().ok_or_else(|| Error::invalid("fields must be a list"))?;
            let fields = base["fields"].as_array_mut().ok_or_else(|| Error::invalid("fields must be a list"))?;
            for field in list {
                match fields.iter_mut().find(|f| f["name"] == field["name"]) {
                    Some(existing) => *existing = field.clone(),
                    None => fields.push(field.clone()),
                }
            }
        } else if key == "index" {
            let Some(obj) = value.as_object() else { return Err(Error::invalid("index must be a mapping")) };
            for (k, v) in obj {
                base["index"][k] = v.clone();
            }
        } else {
            base[key] = value.clone();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Backend;

    #[test]
    fn builtins_are_valid() {
        for spec in builtin_milvus() {
            spec.validate(Backend::Milvus).unwrap();
            assert_eq!(spec.dim, Some(256));
        }
        for spec in builtin_weaviate() {
            spec.validate(Backend::Weaviate).unwrap();
        }
        let image = builtin_weaviate().pop().unwrap();
        let mut broken = image.clone();
        broken.fields.retain(|f| f.name != "image");
        assert!(broken.validate(Backend::Weaviate).unwrap_err().to_string().contains("image field image"));
    }

    #[test]
    fn a_file_extends_or_replaces_the_builtins() {
        let file = SpecFile::parse(
            "milvus:\n  - name: item_embeddings\n    dim: 384\n    index: {preset: high_recall, search: {ef: 128}}\n    fields:\n      - {name: category, type: varchar, max_length: 128}\n      - {name: brand, type: varchar, max_length: 64}\n  - name: extra\n    key: {name: id, type: int64}\n    dim: 8\n    metric: L2\n",
            "test",
        )
        .unwrap();
        let specs = file.specs(Backend::Milvus).unwrap();
        assert_eq!(specs.len(), 4);
        let items = specs.iter().find(|s| s.name == "item_embeddings").unwrap();
        assert_eq!(items.dim, Some(384));
        assert_eq!(items.index.preset, PresetChoice::Named(crate::Preset::HighRecall));
        assert_eq!(items.index.search.ef, Some(128));
        assert_eq!(items.fields.iter().find(|f| f.name == "category").unwrap().max_length, Some(128));
        assert!(items.fields.iter().any(|f| f.name == "brand"));
        assert!(items.fields.iter().any(|f| f.name == "updated_at"));

        let replaced = SpecFile::parse(
            "defaults: replace\nmilvus:\n  - {name: only, key: {name: id, type: int64}, dim: 8, metric: L2}\n",
            "t",
        )
        .unwrap();
        assert_eq!(replaced.specs(Backend::Milvus).unwrap().len(), 1);
    }

    #[test]
    fn bad_files_name_what_is_wrong() {
        let cases = [
            ("milvus:\n  - {name: item_embeddings, dim: 0}\n", "dimension 0"),
            ("milvus:\n  - {name: item_embeddings, index: {preset: fastest}}\n", "unknown index preset"),
            ("milvus:\n  - {name: item_embeddings, index: {preset: large_hnsw, build: {M: 1}}}\n", "M = 1"),
            ("milvus:\n  - {name: new_one, dim: 8}\n", "metric"),
            ("milvus:\n  - {name: x, key: {name: id, type: int64}, dim: 8, metric: L2, colour: red}\n", "colour"),
            ("mivlus: []\n", "mivlus"),
        ];
        for (text, expected) in cases {
            let err = SpecFile::parse(text, "spec.yaml").and_then(|f| f.specs(Backend::Milvus)).unwrap_err();
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }
}
