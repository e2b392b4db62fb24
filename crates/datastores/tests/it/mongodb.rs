use datastores::mongodb_driver::bson::{Document, doc};
use datastores::{Datastore, MongoConfig, Secret};
use testkit::{TestMongoDatabase, expect_up, require};

#[tokio::test]
async fn health_reports_the_server_version() {
    let config = expect_up(MongoConfig::from_settings(&require(Datastore::MongoDb)));
    let version = expect_up(config.health().await);
    assert!(version.starts_with("MongoDB "), "{version}");
}

#[tokio::test]
async fn authenticated_reads_and_writes_in_an_own_database() {
    let db = TestMongoDatabase::new();
    let client = expect_up(db.config.client().await);
    let collection = client.database(&db.name).collection::<Document>("items");
    collection.insert_one(doc! { "k": 1 }).await.unwrap();
    assert_eq!(collection.count_documents(doc! {}).await.unwrap(), 1);
}

#[tokio::test]
async fn wrong_password_is_refused_without_echoing_it() {
    let mut config = expect_up(MongoConfig::from_settings(&require(Datastore::MongoDb)));
    config.password = Some(Secret::new("not-the-mongo-pw"));
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.contains("MongoDB at 127.0.0.1:"), "{err}");
    assert!(!err.contains("not-the-mongo-pw"), "{err}");
}
