//! Classes as Weaviate's schema manager handles them: the defaults it fills in on create, the
//! validation it runs, and the settings an update may not change. Messages are Weaviate's own
//! (from `usecases/schema` and the modules of the server's source), except where the fake is
//! stricter than Weaviate, which the message then says.

use serde_json::{Map, Value, json};

/// The two lines of Weaviate releases the fake answers as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Era {
    /// 1.22 and older: one HNSW vector index per class, immutable module config.
    V122,
    /// 1.23 and newer, modelled on 1.39: flat indexes, quantizers, more defaults.
    V139,
}

impl Era {
    pub(crate) fn of(version: &str) -> Era {
        let minor = version.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()).unwrap_or(u32::MAX);
        if minor <= 22 { Era::V122 } else { Era::V139 }
    }
}

/// Whether a class is being created (names are normalised, legacy data types migrated) or
/// replaced by `PUT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Create,
    Update,
}

/// What the schema rules depend on besides the class itself.
pub(crate) struct Rules<'a> {
    pub(crate) era: Era,
    /// Enabled modules.
    pub(crate) modules: &'a [String],
    /// Names of the classes that exist, for cross-reference data types.
    pub(crate) classes: &'a [String],
}

const PRIMITIVE_TYPES: [&str; 17] = [
    "text",
    "text[]",
    "string",
    "string[]",
    "int",
    "int[]",
    "number",
    "number[]",
    "boolean",
    "boolean[]",
    "date",
    "date[]",
    "uuid",
    "uuid[]",
    "blob",
    "geoCoordinates",
    "phoneNumber",
];

const DISTANCES: [&str; 5] = ["cosine", "dot", "l2-squared", "manhattan", "hamming"];

/// A class with Weaviate's defaults filled in and its settings validated, as `GET
/// /v1/schema/{className}` would answer it afterwards. The caller checks that a new class's name
/// is free.
pub(crate) fn normalize_class(rules: &Rules, body: &Value, mode: Mode) -> Result<Value, String> {
    let given = without_unset(body.as_object().ok_or("a class must be a JSON object")?);
    let mut class = Map::new();

    let mut name = given.get("class").and_then(Value::as_str).unwrap_or_default().to_owned();
    if mode == Mode::Create {
        name = uppercase_first(&name);
        validate_class_name(&name)?;
    }
    class.insert("class".into(), name.clone().into());
    if let Some(description) = given.get("description") {
        class.insert("description".into(), description.clone());
    }
    if given.contains_key("vectorConfig") {
        return Err("named vectors (vectorConfig) are not supported by the fake Weaviate".into());
    }

    let multi_tenancy = given.get("multiTenancyConfig").and_then(Value::as_object).cloned().unwrap_or_default();
    if multi_tenancy.get("enabled") == Some(&Value::Bool(true)) {
        return Err("multi-tenancy is not supported by the fake Weaviate".into());
    }
    let mut multi_tenancy_defaults = match rules.era {
        Era::V122 => json!({"enabled": false}),
        Era::V139 => json!({"enabled": false, "autoTenantCreation": false, "autoTenantActivation": false}),
    };
    overlay(&mut multi_tenancy_defaults, &Value::Object(multi_tenancy));
    class.insert("multiTenancyConfig".into(), multi_tenancy_defaults);

    let vectorizer =
        given.get("vectorizer").and_then(Value::as_str).filter(|v| !v.is_empty()).unwrap_or("none").to_owned();
    if vectorizer != "none" && !rules.modules.contains(&vectorizer) {
        return Err(format!("vectorizer: no module with name {vectorizer:?} present"));
    }
    class.insert("vectorizer".into(), vectorizer.clone().into());

    let index_type =
        given.get("vectorIndexType").and_then(Value::as_str).filter(|t| !t.is_empty()).unwrap_or("hnsw").to_owned();
    match (rules.era, index_type.as_str()) {
        (_, "hnsw") | (Era::V139, "flat") => {}
        (Era::V122, _) => return Err(format!("unrecognized or unsupported vectorIndexType {index_type:?}")),
        (Era::V139, _) => {
            return Err(format!(
                "parse vector index config: unsupported vector index type: {index_type:?} (the fake Weaviate \
                 supports hnsw and flat)"
            ));
        }
    }
    class.insert(
        "vectorIndexConfig".into(),
        vector_index_config(rules.era, &index_type, given.get("vectorIndexConfig"))?,
    );
    class.insert("vectorIndexType".into(), index_type.into());

    let mut properties = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for property in given.get("properties").and_then(Value::as_array).into_iter().flatten() {
        let property = normalize_property(rules, property, &vectorizer, mode, &name)?;
        let property_name = property["name"].as_str().unwrap_or_default().to_owned();
        if seen.contains(&property_name.to_lowercase()) {
            // Weaviate's message names the property where it means the class and the reverse.
            return Err(format!(
                "class {property_name:?}: conflict for property {name:?}: already in use or provided multiple times"
            ));
        }
        seen.push(property_name.to_lowercase());
        properties.push(property);
    }
    class.insert("properties".into(), Value::Array(properties));

    class.insert("invertedIndexConfig".into(), inverted_index_config(rules.era, given.get("invertedIndexConfig"))?);
    class.insert("shardingConfig".into(), sharding_config(given.get("shardingConfig"))?);
    class.insert("replicationConfig".into(), replication_config(rules.era, given.get("replicationConfig"), mode)?);

    let mut module_config = given.get("moduleConfig").and_then(Value::as_object).cloned().unwrap_or_default();
    if vectorizer != "none" {
        let mut merged = Value::Object(module_class_defaults(&vectorizer));
        if let Some(user) = module_config.get(&vectorizer).and_then(Value::as_object) {
            merged.as_object_mut().into_iter().for_each(|m| m.extend(user.clone()));
        }
        module_config.insert(vectorizer.clone(), merged);
        if module_config.contains_key("img2vec-neural") && rules.modules.iter().any(|m| m == "img2vec-neural") {
            validate_image_fields(&module_config["img2vec-neural"], &class["properties"])
                .map_err(|e| format!("module 'img2vec-neural': {e}"))?;
        }
    }
    if !module_config.is_empty() {
        class.insert("moduleConfig".into(), Value::Object(module_config));
    }
    if rules.era == Era::V139
        && let Some(ttl) = given.get("objectTtlConfig")
    {
        class.insert("objectTtlConfig".into(), ttl.clone());
    }
    Ok(Value::Object(class))
}

/// A property with its defaults, checked as Weaviate checks one on create and on
/// `POST /v1/schema/{className}/properties`.
pub(crate) fn normalize_property(
    rules: &Rules,
    body: &Value,
    vectorizer: &str,
    mode: Mode,
    class_name: &str,
) -> Result<Value, String> {
    let mut property = without_unset(body.as_object().ok_or("a property must be a JSON object")?);
    let name = lowercase_first(property.get("name").and_then(Value::as_str).unwrap_or_default());
    validate_property_name(&name)?;
    property.insert("name".into(), name.clone().into());

    let data_type: Vec<String> = property
        .get("dataType")
        .and_then(Value::as_array)
        .map(|types| types.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default();
    let kind =
        classify(&data_type, rules, class_name).map_err(|e| format!("property '{name}': invalid dataType: {e}"))?;

    let text_like = matches!(kind, Kind::Primitive("text" | "text[]" | "string" | "string[]"));
    if text_like {
        property.entry("tokenization").or_insert_with(|| "word".into());
    }
    let tokenization = property.get("tokenization").and_then(Value::as_str).map(str::to_owned);
    validate_tokenization(rules.era, &kind, tokenization.as_deref())?;

    let inverted = property.remove("indexInverted");
    if let Some(inverted) = &inverted {
        if property.contains_key("indexFilterable") || property.contains_key("indexSearchable") {
            return Err("`indexInverted` is deprecated and can not be set together with `indexFilterable` or \
                        `indexSearchable`"
                .into());
        }
        property.insert("indexFilterable".into(), inverted.clone());
        property.insert("indexSearchable".into(), if text_like { inverted.clone() } else { false.into() });
    }
    let filterable_default = !(rules.era == Era::V122 && kind == Kind::Primitive("blob"));
    property.entry("indexFilterable").or_insert(filterable_default.into());
    property.entry("indexSearchable").or_insert(text_like.into());
    if property.get("indexSearchable") == Some(&Value::Bool(true)) && !text_like {
        return Err("`indexSearchable` is not allowed for other than text/text[] data types".into());
    }
    if rules.era == Era::V139 {
        property.entry("indexRangeFilters").or_insert(false.into());
    }

    match kind {
        Kind::Nested(_) => {
            let nested = property.get("nestedProperties").and_then(Value::as_array).cloned().unwrap_or_default();
            if nested.is_empty() {
                return Err(format!(
                    "Property '{name}': At least one nested property is required for data type object/object[]"
                ));
            }
            let nested = nested.iter().map(|n| normalize_nested(rules.era, n, &name)).collect::<Result<_, _>>()?;
            property.insert("nestedProperties".into(), Value::Array(nested));
        }
        _ => {
            if property.get("nestedProperties").and_then(Value::as_array).is_some_and(|n| !n.is_empty()) {
                return Err(format!(
                    "property '{name}': nestedProperties not allowed for data types other than object/object[]"
                ));
            }
        }
    }

    // Migration of the data types deprecated in 1.19, on create only.
    if mode == Mode::Create && matches!(kind, Kind::Primitive("string" | "string[]")) {
        let migrated = if kind == Kind::Primitive("string") { "text" } else { "text[]" };
        property.insert("dataType".into(), json!([migrated]));
        if property.get("tokenization") == Some(&json!("word")) {
            property.insert("tokenization".into(), "whitespace".into());
        }
    }

    if vectorizer != "none" {
        let mut module_config = property.get("moduleConfig").and_then(Value::as_object).cloned().unwrap_or_default();
        let mut merged = module_property_defaults(vectorizer);
        if let Some(user) = module_config.get(vectorizer).and_then(Value::as_object) {
            merged.extend(user.clone());
        }
        module_config.insert(vectorizer.to_owned(), Value::Object(merged));
        property.insert("moduleConfig".into(), Value::Object(module_config));
    }
    Ok(Value::Object(property))
}

/// The reason `updated` (normalised in [`Mode::Update`]) may not replace `stored`, if any.
pub(crate) fn check_update(era: Era, stored: &Value, updated: &Value) -> Result<(), String> {
    let immutable_text = |field: &str, label: &str| -> Result<(), String> {
        let (old, new) = (stored[field].as_str().unwrap_or(""), updated[field].as_str().unwrap_or(""));
        if old != new {
            return Err(format!("{label} is immutable: attempted change from {old:?} to {new:?}"));
        }
        Ok(())
    };
    let vector_index = || -> Result<(), String> {
        let prefix = if era == Era::V122 { "vector index config" } else { "validate vector index config" };
        let fields: &[&str] = if stored["vectorIndexType"] == "flat" {
            &["distance"]
        } else {
            &["efConstruction", "maxConnections", "cleanupIntervalSeconds", "distance"]
        };
        for field in fields {
            let (old, new) = (&stored["vectorIndexConfig"][field], &updated["vectorIndexConfig"][field]);
            if old != new {
                return Err(format!(
                    "{prefix}: {field} is immutable: attempted change from \"{}\" to \"{}\"",
                    plain(old),
                    plain(new)
                ));
            }
        }
        Ok(())
    };
    let sharding = || -> Result<(), String> {
        let (old, new) = (&stored["shardingConfig"], &updated["shardingConfig"]);
        if old["desiredCount"] != new["desiredCount"] {
            return Err(format!(
                "validate sharding config: re-sharding not supported yet: shard count is immutable: attempted change \
                 from \"{}\" to \"{}\"",
                old["desiredCount"], new["desiredCount"]
            ));
        }
        if old["virtualPerPhysical"] != new["virtualPerPhysical"] {
            return Err(format!(
                "validate sharding config: virtual shards per physical is immutable: attempted change from \"{}\" to \
                 \"{}\"",
                old["virtualPerPhysical"], new["virtualPerPhysical"]
            ));
        }
        Ok(())
    };
    let replication = || -> Result<(), String> {
        let factor = updated["replicationConfig"]["factor"].as_i64().unwrap_or(1);
        if factor != stored["replicationConfig"]["factor"].as_i64().unwrap_or(1) && factor > 1 {
            return Err(format!("replication config: cannot scale to {factor} replicas, cluster has only 1 nodes"));
        }
        Ok(())
    };

    match era {
        Era::V122 => {
            immutable_text("class", "class name")?;
            immutable_text("vectorizer", "vectorizer")?;
            immutable_text("vectorIndexType", "vector index type")?;
            if stored["properties"] != updated["properties"] {
                return Err("properties cannot be updated through updating the class. Use the add property feature \
                            (e.g. \"POST /v1/schema/{className}/properties\") to add additional properties"
                    .into());
            }
            if stored.get("moduleConfig") != updated.get("moduleConfig") {
                return Err("module config is immutable".into());
            }
            vector_index()?;
            sharding()?;
            replication()
        }
        Era::V139 => {
            immutable_text("class", "class name")?;
            let empty = Map::new();
            let old_modules = stored["moduleConfig"].as_object().unwrap_or(&empty);
            for (module, config) in updated["moduleConfig"].as_object().unwrap_or(&empty) {
                if old_modules.get(module).is_some_and(|old| old != config) {
                    return Err(format!(
                        "can only update generative and reranker module configs. Got: {module} for class: {}",
                        plain(&updated["class"])
                    ));
                }
            }
            immutable_text("vectorizer", "vectorizer")?;
            immutable_text("vectorIndexType", "vector index type")?;
            vector_index()?;
            sharding()?;
            let without_description = |class: &Value| -> Vec<Value> {
                let mut properties = class["properties"].as_array().cloned().unwrap_or_default();
                for property in &mut properties {
                    property.as_object_mut().map(|p| p.remove("description"));
                }
                properties.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
                properties
            };
            if without_description(stored) != without_description(updated) {
                return Err("property fields other than description cannot be updated through updating the class. \
                            Use the add property feature (e.g. \"POST /v1/schema/{className}/properties\") to add \
                            additional properties"
                    .into());
            }
            for (field, label) in [
                ("indexTimestamps", "indexTimestamp"),
                ("indexNullState", "indexNullState"),
                ("indexPropertyLength", "indexPropertyLength"),
            ] {
                let flag = |class: &Value| class["invertedIndexConfig"][field] == true;
                if flag(stored) != flag(updated) {
                    return Err(format!(
                        "{label:?} setting is immutable. Value changed from \"{}\" to \"{}\"",
                        flag(stored),
                        flag(updated)
                    ));
                }
            }
            replication()
        }
    }
}

/// Adds a property to `class` as `POST /v1/schema/{className}/properties` does; returns the
/// property as stored.
pub(crate) fn add_property(rules: &Rules, class: &mut Value, body: &Value) -> Result<Value, String> {
    if body["name"].as_str().is_none_or(str::is_empty) {
        return Err("property must contain name".into());
    }
    if body.get("dataType").is_none_or(Value::is_null) {
        return Err("property must contain dataType".into());
    }
    let class_name = class["class"].as_str().unwrap_or_default().to_owned();
    let vectorizer = class["vectorizer"].as_str().unwrap_or("none").to_owned();
    let property = normalize_property(rules, body, &vectorizer, Mode::Create, &class_name)?;
    let name = property["name"].as_str().unwrap_or_default().to_lowercase();
    let properties = class["properties"].as_array().cloned().unwrap_or_default();
    if properties.iter().any(|p| p["name"].as_str().is_some_and(|n| n.to_lowercase() == name)) {
        return Err(format!(
            "class {:?}: conflict for property {class_name:?}: already in use or provided multiple times",
            property["name"].as_str().unwrap_or_default()
        ));
    }
    if let Some(list) = class.get_mut("properties").and_then(Value::as_array_mut) {
        list.push(property.clone());
    } else {
        class["properties"] = json!([property.clone()]);
    }
    Ok(property)
}

/// What a property's `dataType` is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind<'a> {
    Primitive(&'a str),
    Nested(&'a str),
    Reference,
}

fn classify<'a>(data_type: &'a [String], rules: &Rules, class_name: &str) -> Result<Kind<'a>, String> {
    match data_type {
        [] => Err("dataType must have at least one element".into()),
        [single] if PRIMITIVE_TYPES.contains(&single.as_str()) => Ok(Kind::Primitive(single)),
        [single] if single == "object" || single == "object[]" => Ok(Kind::Nested(single)),
        references => {
            for target in references {
                if target != class_name && !rules.classes.contains(target) {
                    return Err("reference property to nonexistent class".into());
                }
            }
            Ok(Kind::Reference)
        }
    }
}

fn validate_tokenization(era: Era, kind: &Kind, tokenization: Option<&str>) -> Result<(), String> {
    let allowed: &[&str] = match kind {
        Kind::Primitive("string" | "string[]") => &["field", "word"],
        Kind::Primitive("text" | "text[]") => match era {
            Era::V122 => &["field", "word", "whitespace", "lowercase"],
            Era::V139 => {
                &["field", "word", "whitespace", "lowercase", "trigram", "gse", "kagome_kr", "kagome_ja", "gse_ch"]
            }
        },
        Kind::Primitive(other) => {
            return match tokenization {
                None => Ok(()),
                Some(_) => Err(format!("Tokenization is not allowed for data type '{other}'")),
            };
        }
        Kind::Nested(_) => {
            return match tokenization {
                None => Ok(()),
                Some(_) => Err("Tokenization is not allowed for object/object[] data types".into()),
            };
        }
        Kind::Reference => {
            return match tokenization {
                None => Ok(()),
                Some(_) => Err("Tokenization is not allowed for reference data type".into()),
            };
        }
    };
    match (kind, tokenization) {
        (Kind::Primitive(data_type), Some(t)) if !allowed.contains(&t) => {
            Err(format!("Tokenization '{t}' is not allowed for data type '{data_type}'"))
        }
        _ => Ok(()),
    }
}

/// Defaults for a nested property (`nestedProperties` of an object property).
fn normalize_nested(era: Era, body: &Value, prefix: &str) -> Result<Value, String> {
    let mut property = without_unset(body.as_object().ok_or("a nested property must be a JSON object")?);
    let name = property.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
    if !is_graphql_name(&name) {
        return Err(format!(
            "'{name}' is not a valid nested property name of '{prefix}'. NestedProperty names in Weaviate are \
             restricted to valid GraphQL names, which must be “/[_A-Za-z][_0-9A-Za-z]*/”."
        ));
    }
    let path = format!("{prefix}.{name}");
    let data_type = property.get("dataType").and_then(Value::as_array).and_then(|t| t.first()).and_then(Value::as_str);
    let data_type = data_type.unwrap_or_default().to_owned();
    let text = matches!(data_type.as_str(), "text" | "text[]");
    match data_type.as_str() {
        "object" | "object[]" => {
            let nested = property.get("nestedProperties").and_then(Value::as_array).cloned().unwrap_or_default();
            if nested.is_empty() {
                return Err(format!(
                    "Property '{path}': At least one nested property is required for data type object/object[]"
                ));
            }
            let nested = nested.iter().map(|n| normalize_nested(era, n, &path)).collect::<Result<_, _>>()?;
            property.insert("nestedProperties".into(), Value::Array(nested));
        }
        "string" | "string[]" => {
            return Err(format!(
                "Property '{path}': data type '{data_type}' is deprecated and not allowed as nested property"
            ));
        }
        "geoCoordinates" | "phoneNumber" => {
            return Err(format!("Property '{path}': data type '{data_type}' not allowed as nested property"));
        }
        other if PRIMITIVE_TYPES.contains(&other) => {}
        _ => return Err(format!("Property '{path}': reference data type not allowed")),
    }
    if text {
        property.entry("tokenization").or_insert_with(|| "word".into());
    } else if property.contains_key("tokenization") {
        return Err(format!("Property '{path}': Tokenization is not allowed for data type '{data_type}'"));
    }
    property.entry("indexFilterable").or_insert((data_type != "blob").into());
    property.entry("indexSearchable").or_insert(text.into());
    if property.get("indexSearchable") == Some(&Value::Bool(true)) && !text {
        return Err(format!(
            "Property '{path}': `indexSearchable` is not allowed for other than text/text[] data types"
        ));
    }
    if era == Era::V139 {
        property.entry("indexRangeFilters").or_insert(false.into());
    }
    Ok(Value::Object(property))
}

fn vector_index_config(era: Era, index_type: &str, given: Option<&Value>) -> Result<Value, String> {
    let mut config = match (era, index_type) {
        (Era::V139, "flat") => json!({
            "distance": "cosine",
            "vectorCacheMaxObjects": 1_000_000_000_000_i64,
            "pq": {"enabled": false, "rescoreLimit": -1, "cache": false},
            "bq": {"enabled": false, "rescoreLimit": -1, "cache": false},
            "sq": {"enabled": false, "rescoreLimit": -1, "cache": false},
            "rq": {"enabled": false, "rescoreLimit": -1, "cache": false, "bits": 8},
            "skipDefaultQuantization": false,
            "trackDefaultQuantization": false,
        }),
        _ => {
            let mut hnsw = json!({
                "skip": false,
                "cleanupIntervalSeconds": 300,
                "maxConnections": if era == Era::V122 { 64 } else { 32 },
                "efConstruction": 128,
                "ef": -1,
                "dynamicEfMin": 100,
                "dynamicEfMax": 500,
                "dynamicEfFactor": 8,
                "vectorCacheMaxObjects": 1_000_000_000_000_i64,
                "flatSearchCutoff": 40000,
                "distance": "cosine",
                "pq": {
                    "enabled": false,
                    "bitCompression": false,
                    "segments": 0,
                    "centroids": 256,
                    "trainingLimit": 100000,
                    "encoder": {"type": "kmeans", "distribution": "log-normal"}
                },
            });
            if era == Era::V139 {
                let extra = json!({
                    "bq": {"enabled": false},
                    "sq": {"enabled": false, "trainingLimit": 100000, "rescoreLimit": 20},
                    "rq": {"enabled": false, "bits": 8, "rescoreLimit": 20},
                    "filterStrategy": "acorn",
                    "multivector": {
                        "enabled": false,
                        "muvera": {"enabled": false, "ksim": 4, "dprojections": 16, "repetitions": 10},
                        "aggregation": "maxSim"
                    },
                    "skipDefaultQuantization": false,
                    "trackDefaultQuantization": false,
                });
                hnsw.as_object_mut().into_iter().for_each(|h| h.extend(extra.as_object().cloned().unwrap_or_default()));
            }
            hnsw
        }
    };
    if let Some(given) = given {
        if !given.is_object() {
            return Err("parse vector index config: input must be a non-nil map".into());
        }
        overlay(&mut config, given);
    }
    let distance = config["distance"].as_str().unwrap_or_default().to_owned();
    if !DISTANCES.contains(&distance.as_str()) {
        return Err(format!(
            "parse vector index config: unrecognized distance metric {distance:?}, choose one of {DISTANCES:?}"
        ));
    }
    if index_type == "hnsw" {
        let mut problems = Vec::new();
        if config["maxConnections"].as_i64().unwrap_or(0) < 4 {
            problems.push("maxConnections must be a positive integer with a minimum of 4");
        }
        if config["efConstruction"].as_i64().unwrap_or(0) < 4 {
            problems.push("efConstruction must be a positive integer with a minimum of 4");
        }
        if !problems.is_empty() {
            return Err(format!("parse vector index config: invalid hnsw config: {}", problems.join(", ")));
        }
    }
    Ok(config)
}

fn inverted_index_config(era: Era, given: Option<&Value>) -> Result<Value, String> {
    let mut config = given.and_then(Value::as_object).map(without_unset).unwrap_or_default();
    if config.get("cleanupIntervalSeconds").and_then(Value::as_f64).unwrap_or(0.0) == 0.0 {
        config.insert("cleanupIntervalSeconds".into(), 60.into());
    } else if let Some(seconds) = config.get("cleanupIntervalSeconds").and_then(Value::as_f64) {
        config.insert("cleanupIntervalSeconds".into(), (seconds as i64).into());
    }
    match config.get("bm25").and_then(Value::as_object) {
        None => {
            config.insert("bm25".into(), json!({"b": 0.75, "k1": 1.2}));
        }
        Some(bm25) => {
            let value = |key: &str| bm25.get(key).cloned().unwrap_or_else(|| json!(0));
            config.insert("bm25".into(), json!({"b": value("b"), "k1": value("k1")}));
        }
    }
    let stopwords = config.get("stopwords").and_then(Value::as_object).cloned().unwrap_or_default();
    let preset = stopwords.get("preset").and_then(Value::as_str).filter(|p| !p.is_empty()).unwrap_or("en");
    if !matches!(preset, "en" | "none") {
        return Err(format!("stopwords: preset {preset:?} is not one of \"en\", \"none\""));
    }
    config.insert(
        "stopwords".into(),
        json!({
            "preset": preset,
            "additions": stopwords.get("additions").cloned().unwrap_or(Value::Null),
            "removals": stopwords.get("removals").cloned().unwrap_or(Value::Null),
        }),
    );
    // Go leaves these flags out when false.
    for flag in ["indexTimestamps", "indexNullState", "indexPropertyLength"] {
        if config.get(flag) == Some(&Value::Bool(false)) {
            config.remove(flag);
        }
    }
    if era == Era::V139 {
        config.entry("usingBlockMaxWAND").or_insert(true.into());
    }
    Ok(Value::Object(config))
}

fn sharding_config(given: Option<&Value>) -> Result<Value, String> {
    let mut config = json!({
        "virtualPerPhysical": 128,
        "desiredCount": 1,
        "key": "_id",
        "strategy": "hash",
        "function": "murmur3",
    });
    if let Some(given) = given {
        if !given.is_object() {
            return Err("parse sharding config: input must be a non-nil map".into());
        }
        overlay(&mut config, given);
    }
    for (field, expected, label) in
        [("key", "_id", "on key"), ("strategy", "hash", "with strategy"), ("function", "murmur3", "with function")]
    {
        let value = config[field].as_str().unwrap_or_default();
        if value != expected {
            return Err(format!(
                "parse sharding config: sharding only supported {label} '{expected}' for now, got: {value}"
            ));
        }
    }
    let desired = config["desiredCount"].as_i64().unwrap_or(1);
    if desired < 1 {
        return Err(format!(
            "parse sharding config: desiredCount must be at least 1 in the fake Weaviate, got {desired}"
        ));
    }
    let virtual_count = desired * config["virtualPerPhysical"].as_i64().unwrap_or(128);
    config["actualCount"] = desired.into();
    config["desiredVirtualCount"] = virtual_count.into();
    config["actualVirtualCount"] = virtual_count.into();
    Ok(config)
}

fn replication_config(era: Era, given: Option<&Value>, mode: Mode) -> Result<Value, String> {
    let mut config = given.and_then(Value::as_object).map(without_unset).unwrap_or_default();
    let factor = config.get("factor").and_then(Value::as_i64).filter(|f| *f >= 1).unwrap_or(1);
    if factor > 1 && mode == Mode::Create {
        return Err(format!("init sharding state: not enough replicas: found 1 want {factor}"));
    }
    config.insert("factor".into(), factor.into());
    if era == Era::V139 {
        config.entry("deletionStrategy").or_insert_with(|| "TimeBasedResolution".into());
    }
    Ok(Value::Object(config))
}

/// The class-level settings a vectorizer module adds (its `ClassConfigDefaults`).
fn module_class_defaults(module: &str) -> Map<String, Value> {
    let defaults = match module {
        "text2vec-transformers" => json!({"vectorizeClassName": true, "poolingStrategy": "masked_mean"}),
        m if m.starts_with("text2vec-") => json!({"vectorizeClassName": true}),
        _ => json!({}),
    };
    defaults.as_object().cloned().unwrap_or_default()
}

/// The per-property settings a vectorizer module adds (its `PropertyConfigDefaults`).
fn module_property_defaults(module: &str) -> Map<String, Value> {
    let defaults = match module {
        m if m.starts_with("text2vec-") => json!({"skip": false, "vectorizePropertyName": false}),
        _ => json!({}),
    };
    defaults.as_object().cloned().unwrap_or_default()
}

/// img2vec-neural's class settings check. Weaviate only asks for a non-empty list of names; the
/// fake also requires each name to be a `blob` property, which is what the module reads images
/// from.
fn validate_image_fields(config: &Value, properties: &Value) -> Result<(), String> {
    let fields = config.get("imageFields").ok_or("imageFields not present")?;
    let fields = fields.as_array().ok_or("imageFields must be an array")?;
    if fields.is_empty() {
        return Err("must contain at least one image field name in imageFields".into());
    }
    for field in fields {
        let field = field.as_str().ok_or("imageField must be a string")?;
        if field.is_empty() {
            return Err("imageField values cannot be empty".into());
        }
        let blob =
            properties.as_array().into_iter().flatten().any(|p| p["name"] == field && p["dataType"] == json!(["blob"]));
        if !blob {
            return Err(format!("imageField {field:?} is not a property of data type blob (checked by the fake only)"));
        }
    }
    Ok(())
}

fn validate_class_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid =
        chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid { Ok(()) } else { Err(format!("'{name}' is not a valid class name")) }
}

fn validate_property_name(name: &str) -> Result<(), String> {
    if !is_graphql_name(name) {
        return Err(format!(
            "'{name}' is not a valid property name. Property names in Weaviate are restricted to valid GraphQL \
             names, which must be “/[_A-Za-z][_0-9A-Za-z]*/”."
        ));
    }
    if matches!(name, "_additional" | "_id" | "id") {
        return Err(format!("'{name}' is a reserved property name"));
    }
    Ok(())
}

fn is_graphql_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

pub(crate) fn uppercase_first(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

pub(crate) fn lowercase_first(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}

/// Sets the fields of `defaults` that `given` also has, keeping each default's JSON type (as Go
/// decodes into a typed struct): nested objects recursively, integers truncated; fields the
/// defaults do not have, and values of another type, are dropped.
fn overlay(defaults: &mut Value, given: &Value) {
    let (Value::Object(defaults), Value::Object(given)) = (defaults, given) else { return };
    for (key, default) in defaults.iter_mut() {
        let Some(value) = given.get(key) else { continue };
        match (&*default, value) {
            (Value::Object(_), Value::Object(_)) => overlay(default, value),
            (Value::Number(n), Value::Number(v)) if n.is_i64() || n.is_u64() => {
                *default = v.as_i64().map(Value::from).unwrap_or_else(|| json!(v.as_f64().unwrap_or(0.0) as i64));
            }
            (Value::Number(_), Value::Number(_))
            | (Value::Bool(_), Value::Bool(_))
            | (Value::String(_), Value::String(_)) => {
                *default = value.clone();
            }
            _ => {}
        }
    }
}

/// A JSON object without the members Go's typed structs treat as unset: `null`, and empty
/// strings (the models' string fields are `omitempty`, and `""` means "use the default").
fn without_unset(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter().filter(|(_, v)| !v.is_null() && v.as_str() != Some("")).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// A JSON value as Go's `%v` prints it: strings without quotes.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
