//! Weaviate has no server on the build machines: the client is checked against the official
//! OpenAPI documents through testkit's fake Weaviate, and against a real server when
//! WEAVIATE_URL is set.

use datastores::{Datastore, DatastoresConfig, Settings, Source, WeaviateConfig};
use serde_json::json;
use testkit::weaviate_fake::{FakeOptions, FakeWeaviate};

const VERSIONS: [&str; 2] = ["1.22.13", "1.39.0"];

fn config(url: &str, key: &str) -> WeaviateConfig {
    testkit::init();
    let settings =
        Settings::new().layer(Source::Other("test".into()), [("WEAVIATE_URL", url), ("WEAVIATE_API_KEY", key)]);
    WeaviateConfig::from_settings(&settings).unwrap()
}

/// A fake Weaviate of `version` that takes `key`, with the module of the real deployment.
async fn server(version: &str, key: &str) -> FakeWeaviate {
    FakeWeaviate::start(FakeOptions {
        version: version.into(),
        api_key: Some(key.into()),
        modules: vec!["text2vec-transformers".into()],
    })
    .await
}

#[tokio::test]
async fn health_follows_the_documents_of_both_versions() {
    for version in VERSIONS {
        let server = server(version, "changeThisToYourApiKey").await;
        let health = config(&server.url, "changeThisToYourApiKey").health().await.unwrap();
        assert_eq!(health, format!("Weaviate {version}"));
        assert_eq!(server.violations(), Vec::<String>::new(), "against the {version} document");
        let received = server.requests();
        let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["/v1/.well-known/live", "/v1/.well-known/ready", "/v1/meta"]);
        for request in &received {
            assert_eq!(request.headers.get("authorization").map(String::as_str), Some("Bearer changeThisToYourApiKey"));
        }
    }
}

#[tokio::test]
async fn a_node_that_is_not_ready_is_unhealthy() {
    for version in VERSIONS {
        let server = server(version, "k").await;
        server.set_ready(false);
        let err = config(&server.url, "k").health().await.unwrap_err().to_string();
        assert!(err.contains("503"), "{err}");
        assert_eq!(server.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn a_rejected_key_is_reported_without_the_key() {
    for version in VERSIONS {
        let server = server(version, "the-right-key").await;
        let err = config(&server.url, "wrong-key-123").health().await.unwrap_err().to_string();
        assert!(err.contains("401") && err.contains("WEAVIATE_API_KEY"), "{err}");
        assert!(!err.contains("wrong-key-123"), "{err}");
        assert_eq!(server.violations(), Vec::<String>::new());
    }
}

#[tokio::test]
async fn server_error_messages_are_passed_on() {
    for version in VERSIONS {
        let server = server(version, "k").await;
        server.set_status("GET", "/v1/meta", 500, Some(json!({"error": [{"message": "disk full"}]})));
        let err = config(&server.url, "k").health().await.unwrap_err().to_string();
        assert!(err.contains("disk full"), "{err}");
        assert_eq!(server.violations(), Vec::<String>::new());
    }
}

/// Talks to a real Weaviate when WEAVIATE_URL is set. Without it (no Weaviate can run on the
/// build machines), it checks that Weaviate counts as not configured, and says so.
#[tokio::test]
async fn real_weaviate_when_configured() {
    let settings = testkit::settings();
    if settings.is_set("WEAVIATE_URL") {
        let config = WeaviateConfig::from_settings(&settings).unwrap();
        let version = testkit::expect_up(config.health().await);
        assert!(version.starts_with("Weaviate 1."), "{version}");
        let meta = config.client().unwrap().meta().await.unwrap();
        assert!(!meta.version.is_empty());
    } else {
        eprintln!("note: WEAVIATE_URL is not set; the real-Weaviate check did not run (the OpenAPI checks did)");
        let config = DatastoresConfig::from_settings(&settings).unwrap();
        assert!(!config.is_configured(Datastore::Weaviate));
    }
}
