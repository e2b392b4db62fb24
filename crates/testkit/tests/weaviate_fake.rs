//! The fake Weaviate against both OpenAPI documents, through plain HTTP.

#![allow(clippy::unwrap_used)]

use serde_json::{Value, json};
use testkit::weaviate_fake::{FakeOptions, FakeWeaviate, weaviate_doc_path};

const VERSIONS: [&str; 2] = ["1.22.13", "1.39.0"];

async fn fake(version: &str, modules: &[&str]) -> FakeWeaviate {
    FakeWeaviate::start(FakeOptions {
        version: version.into(),
        api_key: None,
        modules: modules.iter().map(|m| (*m).to_owned()).collect(),
    })
    .await
}

/// Sends a request; answers the status and the JSON body, if any.
async fn call(fake: &FakeWeaviate, method: &str, path: &str, body: Option<Value>) -> (u16, Option<Value>) {
    call_with_key(fake, method, path, body, None).await
}

async fn call_with_key(
    fake: &FakeWeaviate,
    method: &str,
    path: &str,
    body: Option<Value>,
    key: Option<&str>,
) -> (u16, Option<Value>) {
    testkit::init();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", fake.url));
    if let Some(body) = body {
        request = request.json(&body);
    }
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (status, if bytes.is_empty() { None } else { Some(serde_json::from_slice(&bytes).unwrap()) })
}

fn message(body: &Option<Value>) -> String {
    body.as_ref().and_then(|b| b["error"][0]["message"].as_str()).unwrap_or_default().to_owned()
}

fn no_violations(fake: &FakeWeaviate, version: &str) {
    assert_eq!(fake.violations(), Vec::<String>::new(), "against the {version} document");
}

/// A class with vectorizer none and the given distance.
fn plain_class(name: &str, distance: &str) -> Value {
    json!({
        "class": name,
        "vectorizer": "none",
        "vectorIndexConfig": {"distance": distance},
        "properties": [{"name": "title", "dataType": ["text"]}]
    })
}

fn object(class: &str, id: &str, title: &str, vector: &[f32]) -> Value {
    json!({"class": class, "id": id, "properties": {"title": title}, "vector": vector})
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

#[test]
fn documents_are_found_in_the_repository() {
    for version in VERSIONS {
        assert!(weaviate_doc_path(version).is_file(), "{}", weaviate_doc_path(version).display());
    }
}

#[tokio::test]
async fn a_created_class_gets_weaviates_defaults() {
    for version in VERSIONS {
        let fake = fake(version, &["text2vec-transformers"]).await;
        let sent = json!({
            "class": "document",
            "vectorizer": "text2vec-transformers",
            "properties": [
                {"name": "Title", "dataType": ["text"]},
                {"name": "count", "dataType": ["int"]},
                {"name": "legacy", "dataType": ["string"]}
            ]
        });
        let (status, created) = call(&fake, "POST", "/v1/schema", Some(sent)).await;
        assert_eq!(status, 200, "{created:?}");
        let (status, class) = call(&fake, "GET", "/v1/schema/Document", None).await;
        assert_eq!(status, 200);
        let class = class.unwrap();
        assert_eq!(Some(&class), created.as_ref());
        assert_eq!(fake.class("Document").as_ref(), Some(&class));

        assert_eq!(class["class"], "Document");
        assert_eq!(class["vectorIndexType"], "hnsw");
        let index = &class["vectorIndexConfig"];
        assert_eq!(index["distance"], "cosine");
        assert_eq!(index["ef"], -1);
        assert_eq!(index["efConstruction"], 128);
        assert_eq!(index["maxConnections"], if version == "1.22.13" { 64 } else { 32 });
        assert_eq!(index["cleanupIntervalSeconds"], 300);
        assert_eq!(index["vectorCacheMaxObjects"], 1_000_000_000_000_i64);
        assert_eq!(index["pq"]["enabled"], false);
        let inverted = &class["invertedIndexConfig"];
        assert_eq!(inverted["bm25"], json!({"b": 0.75, "k1": 1.2}));
        assert_eq!(inverted["cleanupIntervalSeconds"], 60);
        assert_eq!(inverted["stopwords"], json!({"preset": "en", "additions": null, "removals": null}));
        assert_eq!(class["shardingConfig"]["desiredCount"], 1);
        assert_eq!(class["shardingConfig"]["virtualPerPhysical"], 128);
        assert_eq!(class["shardingConfig"]["function"], "murmur3");
        assert_eq!(class["replicationConfig"]["factor"], 1);
        assert_eq!(class["multiTenancyConfig"]["enabled"], false);
        assert_eq!(class["moduleConfig"]["text2vec-transformers"]["vectorizeClassName"], true);

        let title = &class["properties"][0];
        assert_eq!(title["name"], "title");
        assert_eq!(title["tokenization"], "word");
        assert_eq!(title["indexFilterable"], true);
        assert_eq!(title["indexSearchable"], true);
        assert_eq!(
            title["moduleConfig"]["text2vec-transformers"],
            json!({"skip": false, "vectorizePropertyName": false})
        );
        assert_eq!(class["properties"][1]["indexSearchable"], false);
        assert!(class["properties"][1].get("tokenization").is_none());
        // string was deprecated in 1.19 and is migrated.
        assert_eq!(class["properties"][2]["dataType"], json!(["text"]));
        assert_eq!(class["properties"][2]["tokenization"], "whitespace");

        let (status, schema) = call(&fake, "GET", "/v1/schema", None).await;
        assert_eq!((status, schema.unwrap()["classes"][0]["class"].clone()), (200, json!("Document")));
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn a_class_cannot_be_created_twice() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        assert_eq!(call(&fake, "POST", "/v1/schema", Some(plain_class("Doc", "cosine"))).await.0, 200);
        let (status, body) = call(&fake, "POST", "/v1/schema", Some(plain_class("Doc", "dot"))).await;
        assert_eq!((status, message(&body).as_str()), (422, "class name \"Doc\" already exists"));
        let (status, body) = call(&fake, "POST", "/v1/schema", Some(plain_class("DOC", "dot"))).await;
        assert_eq!(status, 422);
        assert!(message(&body).contains("already exists as a permutation of"), "{body:?}");
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn an_update_may_not_change_immutable_settings() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        call(&fake, "POST", "/v1/schema", Some(plain_class("Doc", "cosine"))).await;
        let stored = fake.class("Doc").unwrap();

        let mut changed = stored.clone();
        changed["vectorIndexConfig"]["distance"] = json!("dot");
        let (status, body) = call(&fake, "PUT", "/v1/schema/Doc", Some(changed)).await;
        assert_eq!(status, 422);
        assert!(
            message(&body).ends_with("distance is immutable: attempted change from \"cosine\" to \"dot\""),
            "{body:?}"
        );

        let mut changed = stored.clone();
        changed["properties"][0]["indexFilterable"] = json!(false);
        let (status, body) = call(&fake, "PUT", "/v1/schema/Doc", Some(changed)).await;
        assert_eq!(status, 422);
        assert!(message(&body).contains("cannot be updated through updating the class"), "{body:?}");

        let mut changed = stored.clone();
        changed["vectorizer"] = json!("text2vec-transformers");
        assert_eq!(call(&fake, "PUT", "/v1/schema/Doc", Some(changed)).await.0, 422);

        // The class as read back may be sent again, and mutable settings change.
        assert_eq!(call(&fake, "PUT", "/v1/schema/Doc", Some(stored.clone())).await.0, 200);
        let mut changed = stored.clone();
        changed["vectorIndexConfig"]["ef"] = json!(256);
        changed["invertedIndexConfig"]["bm25"]["b"] = json!(0.5);
        let (status, body) = call(&fake, "PUT", "/v1/schema/Doc", Some(changed)).await;
        assert_eq!(status, 200, "{body:?}");
        assert_eq!(fake.class("Doc").unwrap()["vectorIndexConfig"]["ef"], 256);

        assert_eq!(call(&fake, "PUT", "/v1/schema/Missing", Some(plain_class("Missing", "cosine"))).await.0, 404);
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn vectorizers_must_be_enabled_modules() {
    for version in VERSIONS {
        let fake = fake(version, &["img2vec-neural"]).await;
        let class = json!({"class": "Doc", "vectorizer": "text2vec-openai"});
        let (status, body) = call(&fake, "POST", "/v1/schema", Some(class)).await;
        assert_eq!(
            (status, message(&body).as_str()),
            (422, "vectorizer: no module with name \"text2vec-openai\" present")
        );
        assert!(fake.class("Doc").is_none());
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn img2vec_needs_image_fields_naming_blob_properties() {
    for version in VERSIONS {
        let fake = fake(version, &["img2vec-neural"]).await;
        let properties = json!([{"name": "image", "dataType": ["blob"]}, {"name": "caption", "dataType": ["text"]}]);
        let without = json!({"class": "Picture", "vectorizer": "img2vec-neural", "properties": properties});
        let (status, body) = call(&fake, "POST", "/v1/schema", Some(without)).await;
        assert_eq!((status, message(&body).as_str()), (422, "module 'img2vec-neural': imageFields not present"));

        let mut empty = json!({"class": "Picture", "vectorizer": "img2vec-neural", "properties": properties});
        empty["moduleConfig"] = json!({"img2vec-neural": {"imageFields": []}});
        assert_eq!(call(&fake, "POST", "/v1/schema", Some(empty.clone())).await.0, 422);
        let mut text = empty.clone();
        text["moduleConfig"]["img2vec-neural"]["imageFields"] = json!(["caption"]);
        let (status, body) = call(&fake, "POST", "/v1/schema", Some(text)).await;
        assert_eq!(status, 422);
        assert!(message(&body).contains("\"caption\" is not a property of data type blob"), "{body:?}");

        let mut good = empty;
        good["moduleConfig"]["img2vec-neural"]["imageFields"] = json!(["image"]);
        let (status, class) = call(&fake, "POST", "/v1/schema", Some(good)).await;
        assert_eq!(status, 200, "{class:?}");
        assert_eq!(class.unwrap()["moduleConfig"]["img2vec-neural"]["imageFields"], json!(["image"]));
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn a_batch_reports_failures_per_object() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        call(&fake, "POST", "/v1/schema", Some(plain_class("Doc", "cosine"))).await;
        fake.fail_objects_where("title", json!("doomed"));
        let batch = json!({"objects": [
            object("Doc", &uuid(1), "first", &[1.0, 0.0, 0.0]),
            object("Doc", &uuid(2), "short", &[1.0, 0.0]),
            object("Missing", &uuid(3), "x", &[1.0, 0.0, 0.0]),
            {"class": "Doc", "properties": {"title": "no vector"}},
            {"class": "Doc", "properties": {"title": 7}, "vector": [0.0, 1.0, 0.0]},
            object("Doc", &uuid(6), "doomed", &[0.0, 0.0, 1.0]),
            {"class": "Doc", "properties": {"title": "generated id"}, "vector": [0.5, 0.5, 0.0]},
        ]});
        let (status, answer) = call(&fake, "POST", "/v1/batch/objects", Some(batch)).await;
        assert_eq!(status, 200);
        let answer = answer.unwrap();
        let errors: Vec<Option<&str>> =
            answer.as_array().unwrap().iter().map(|o| o["result"]["errors"]["error"][0]["message"].as_str()).collect();
        assert_eq!(errors[0], None);
        assert_eq!(
            errors[1],
            Some(
                "insert to vector index: new node has a vector with length 2. Existing nodes have vectors with length 3"
            )
        );
        assert_eq!(errors[2], Some("class 'Missing' not present in schema"));
        assert!(errors[3].unwrap().contains("has no vector"), "{errors:?}");
        assert_eq!(errors[4], Some("invalid text property 'title' on class 'Doc': not a string, but json.Number"));
        assert!(errors[5].unwrap().contains("failure injected"), "{errors:?}");
        assert_eq!(errors[6], None);
        assert_eq!(answer[0]["id"], uuid(1));
        assert_eq!(answer[0]["result"]["status"], "SUCCESS");
        assert_eq!(answer[1]["result"]["status"], "FAILED");
        assert_eq!(answer[6]["id"].as_str().unwrap().len(), 36);
        assert_eq!(fake.object_count("Doc"), 2);

        // The same id again replaces the object.
        let again = json!({"objects": [object("Doc", &uuid(1), "first, again", &[0.0, 1.0, 0.0])]});
        call(&fake, "POST", "/v1/batch/objects", Some(again)).await;
        assert_eq!(fake.object_count("Doc"), 2);
        let (status, stored) = call(&fake, "GET", &format!("/v1/objects/Doc/{}?include=vector", uuid(1)), None).await;
        assert_eq!(status, 200);
        let stored = stored.unwrap();
        assert_eq!(stored["properties"]["title"], "first, again");
        assert_eq!(stored["vector"], json!([0.0, 1.0, 0.0]));
        let (_, without_vector) = call(&fake, "GET", &format!("/v1/objects/Doc/{}", uuid(1)), None).await;
        assert!(without_vector.unwrap().get("vector").is_none());

        assert_eq!(call(&fake, "DELETE", &format!("/v1/objects/Doc/{}", uuid(1)), None).await.0, 204);
        assert_eq!(call(&fake, "DELETE", &format!("/v1/objects/Doc/{}", uuid(1)), None).await.0, 404);
        assert_eq!(call(&fake, "GET", &format!("/v1/objects/Doc/{}", uuid(1)), None).await.0, 404);
        assert_eq!(fake.object_count("Doc"), 1);

        let (status, body) = call(&fake, "POST", "/v1/batch/objects", Some(json!({"objects": []}))).await;
        assert_eq!(status, 422, "{body:?}");
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn near_vector_search_orders_by_the_class_distance() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        for (class, distance) in [("Cos", "cosine"), ("Dot", "dot"), ("Euclid", "l2-squared")] {
            call(&fake, "POST", "/v1/schema", Some(plain_class(class, distance))).await;
            let batch = json!({"objects": [
                object(class, &uuid(1), "far", &[-1.0, 0.0]),
                object(class, &uuid(2), "near", &[2.0, 0.1]),
                object(class, &uuid(3), "middle", &[0.0, 1.0]),
            ]});
            call(&fake, "POST", "/v1/batch/objects", Some(batch)).await;
        }
        let query = |class: &str| {
            json!({"query": format!(
                "{{ Get {{ {class}(nearVector: {{vector: [1, 0]}}, limit: 2) {{ title _additional {{ id distance }} }} }} }}"
            )})
        };
        let (status, answer) = call(&fake, "POST", "/v1/graphql", Some(query("Cos"))).await;
        assert_eq!(status, 200);
        let hits = answer.unwrap()["data"]["Get"]["Cos"].clone();
        assert_eq!(hits.as_array().unwrap().len(), 2);
        assert_eq!(hits[0]["_additional"]["id"], uuid(2));
        assert_eq!(hits[0]["title"], "near");
        assert_eq!(hits[1]["_additional"], json!({"id": uuid(3), "distance": 1.0}));
        assert!(hits[0]["_additional"]["distance"].as_f64().unwrap() < 0.01);

        let (_, answer) = call(&fake, "POST", "/v1/graphql", Some(query("Dot"))).await;
        let hits = answer.unwrap()["data"]["Get"]["Dot"].clone();
        assert_eq!(hits[0]["_additional"], json!({"id": uuid(2), "distance": -2.0}));
        assert_eq!(hits[1]["_additional"]["id"], uuid(3));

        let compact = json!({"query": "{Get{Euclid(limit:5,nearVector:{vector:[1,0]}){_additional{id distance}}}}"});
        let (_, answer) = call(&fake, "POST", "/v1/graphql", Some(compact)).await;
        let hits = answer.unwrap()["data"]["Get"]["Euclid"].clone();
        let ids: Vec<&str> =
            hits.as_array().unwrap().iter().map(|h| h["_additional"]["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [uuid(2), uuid(3), uuid(1)]);
        assert_eq!(hits[2]["_additional"]["distance"], 4.0);

        let unsupported = json!({"query": "{ Get { Cos(where: {path: [\"title\"]}) { title } } }"});
        let (status, answer) = call(&fake, "POST", "/v1/graphql", Some(unsupported)).await;
        assert_eq!(status, 200);
        assert!(answer.unwrap()["errors"][0]["message"].as_str().unwrap().contains("where"));
        let unknown = json!({"query": "{ Get { Nope { title } } }"});
        let (_, answer) = call(&fake, "POST", "/v1/graphql", Some(unknown)).await;
        assert_eq!(answer.unwrap()["errors"][0]["message"], "Cannot query field \"Nope\" on type \"GetObjectsObj\".");
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn aggregate_counts_the_objects() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        call(&fake, "POST", "/v1/schema", Some(plain_class("Doc", "cosine"))).await;
        let count = || json!({"query": "{\n  Aggregate {\n    Doc {\n      meta { count }\n    }\n  }\n}"});
        let (status, answer) = call(&fake, "POST", "/v1/graphql", Some(count())).await;
        assert_eq!((status, answer.unwrap()), (200, json!({"data": {"Aggregate": {"Doc": [{"meta": {"count": 0}}]}}})));
        let batch =
            json!({"objects": (1..=3).map(|n| object("Doc", &uuid(n), "t", &[1.0, n as f32])).collect::<Vec<_>>()});
        call(&fake, "POST", "/v1/batch/objects", Some(batch)).await;
        let (_, answer) = call(&fake, "POST", "/v1/graphql", Some(count())).await;
        assert_eq!(answer.unwrap()["data"]["Aggregate"]["Doc"][0]["meta"]["count"], 3);

        // Counts also show in the nodes' status (1.39: only verbose).
        let (status, nodes) = call(&fake, "GET", "/v1/nodes?output=verbose", None).await;
        assert_eq!(status, 200);
        let node = &nodes.unwrap()["nodes"][0];
        assert_eq!(node["stats"], json!({"shardCount": 1, "objectCount": 3}));
        assert_eq!(node["shards"][0]["class"], "Doc");
        assert_eq!(node["shards"][0]["vectorIndexingStatus"], "READY");
        let (_, nodes) = call(&fake, "GET", "/v1/nodes", None).await;
        assert_eq!(nodes.unwrap()["nodes"][0]["stats"].is_object(), version == "1.22.13");
        let (status, shards) = call(&fake, "GET", "/v1/schema/Doc/shards", None).await;
        assert_eq!(status, 200);
        assert_eq!(shards.unwrap()[0]["status"], "READY");
        assert_eq!(call(&fake, "GET", "/v1/schema/Missing/shards", None).await.0, 404);

        // Deleting the class deletes its objects; deleting a missing class succeeds.
        assert_eq!(call(&fake, "DELETE", "/v1/schema/Doc", None).await.0, 200);
        assert_eq!(call(&fake, "DELETE", "/v1/schema/Doc", None).await.0, 200);
        assert_eq!(fake.object_count("Doc"), 0);
        assert_eq!(call(&fake, "GET", "/v1/schema/Doc", None).await.0, 404);
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn an_api_key_is_required_except_for_liveness_and_readiness() {
    for version in VERSIONS {
        let options = FakeOptions { version: version.into(), api_key: Some("secret".into()), modules: Vec::new() };
        let fake = FakeWeaviate::start(options).await;
        assert_eq!(call(&fake, "GET", "/v1/.well-known/live", None).await.0, 200);
        assert_eq!(call(&fake, "GET", "/v1/.well-known/ready", None).await.0, 200);
        assert_eq!(call(&fake, "GET", "/v1/meta", None).await.0, 401);
        assert_eq!(call_with_key(&fake, "GET", "/v1/meta", None, Some("wrong")).await.0, 401);
        let class = Some(plain_class("Doc", "cosine"));
        assert_eq!(call_with_key(&fake, "POST", "/v1/schema", class, Some("wrong")).await.0, 401);
        assert!(fake.class("Doc").is_none());
        let (status, meta) = call_with_key(&fake, "GET", "/v1/meta", None, Some("secret")).await;
        assert_eq!((status, meta.unwrap()["version"].clone()), (200, json!(version)));
        let received = fake.requests();
        assert_eq!(received.len(), 6);
        assert_eq!(received[5].headers.get("authorization").map(String::as_str), Some("Bearer secret"));
        assert_eq!(received[4].body, Some(plain_class("Doc", "cosine")));
        assert_eq!(fake.writes(), 1);
        no_violations(&fake, version);
    }
}

#[tokio::test]
async fn requests_outside_the_document_are_recorded_and_still_answered() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        // Several classes at once is the shape of GET /v1/schema's answer, not of a class.
        let schema = json!({"classes": [plain_class("Doc", "cosine")]});
        let (status, body) = call(&fake, "POST", "/v1/schema", Some(schema)).await;
        assert_eq!(status, 422);
        assert!(message(&body).contains("does not fit the document"), "{body:?}");
        assert!(fake.class("Doc").is_none());
        let violations = fake.violations();
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].starts_with("POST /v1/schema: request body"), "{violations:?}");
        assert!(violations[0].contains(version), "{violations:?}");

        assert_eq!(call(&fake, "GET", "/v1/no-such-thing", None).await.0, 404);
        assert_eq!(call(&fake, "PATCH", "/v1/schema", None).await.0, 404);
        // In the document, but not served by the fake.
        assert_eq!(call(&fake, "GET", "/v1/objects", None).await.0, 404);
        // A batch object id that is no UUID.
        let batch = json!({"objects": [{"class": "Doc", "id": "17"}]});
        assert_eq!(call(&fake, "POST", "/v1/batch/objects", Some(batch)).await.0, 422);
        let violations = fake.violations();
        assert_eq!(violations.len(), 5, "{violations:?}");
        assert!(violations[1].contains("GET /v1/no-such-thing"), "{violations:?}");
        assert!(violations[2].contains("PATCH /v1/schema"), "{violations:?}");
        assert!(violations[3].contains("not served by the fake"), "{violations:?}");
        assert!(violations[4].contains("/objects/0/id"), "{violations:?}");
    }
}

#[tokio::test]
async fn answers_can_be_overridden_and_are_still_checked() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        fake.set_ready(false);
        assert_eq!(call(&fake, "GET", "/v1/.well-known/ready", None).await.0, 503);
        fake.set_ready(true);
        assert_eq!(call(&fake, "GET", "/v1/.well-known/ready", None).await.0, 200);
        fake.set_status("GET", "/v1/meta", 500, Some(json!({"error": [{"message": "disk full"}]})));
        let (status, body) = call(&fake, "GET", "/v1/meta", None).await;
        assert_eq!((status, message(&body).as_str()), (500, "disk full"));
        no_violations(&fake, version);
        // An answer the document does not describe is reported.
        fake.set_status("GET", "/v1/meta", 200, Some(json!({"version": 1})));
        assert_eq!(call(&fake, "GET", "/v1/meta", None).await.0, 200);
        assert_eq!(fake.violations().len(), 1, "{:?}", fake.violations());
    }
}

#[tokio::test]
async fn put_class_stores_a_class_as_if_created_elsewhere() {
    for version in VERSIONS {
        let fake = fake(version, &[]).await;
        fake.put_class(json!({"class": "Shared", "vectorizer": "none", "vectorIndexType": "hnsw"}));
        let class = fake.class("Shared").unwrap();
        assert_eq!(class["vectorIndexConfig"]["distance"], "cosine");
        let (status, read) = call(&fake, "GET", "/v1/schema/Shared", None).await;
        assert_eq!((status, read), (200, Some(class)));
        let property = json!({"name": "Summary", "dataType": ["text"]});
        let (status, added) = call(&fake, "POST", "/v1/schema/Shared/properties", Some(property.clone())).await;
        assert_eq!(status, 200);
        assert_eq!(added.unwrap()["name"], "summary");
        let (status, body) = call(&fake, "POST", "/v1/schema/Shared/properties", Some(property)).await;
        assert_eq!(status, 422);
        assert!(message(&body).contains("already in use"), "{body:?}");
        assert_eq!(fake.class("Shared").unwrap()["properties"].as_array().unwrap().len(), 1);
        no_violations(&fake, version);
    }
}
