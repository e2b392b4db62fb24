use datastores::{S3Credentials, Secret};
use testkit::{TestS3Prefix, expect_up};

#[tokio::test]
async fn health_only_reads_unless_asked_to_write_a_probe() {
    let prefix = TestS3Prefix::new();
    let status = expect_up(prefix.config.health(false).await);
    assert_eq!(status, format!("bucket {} readable", prefix.config.bucket));
    let status = expect_up(prefix.config.health(true).await);
    assert_eq!(status, format!("bucket {} writable", prefix.config.bucket));
    let client = prefix.config.client().await;
    let listed =
        client.list_objects_v2().bucket(&prefix.config.bucket).prefix(&prefix.config.prefix).send().await.unwrap();
    assert_eq!(listed.key_count(), Some(0), "the probe object is deleted again");
}

#[tokio::test]
async fn the_read_only_check_works_with_credentials_that_may_not_write() {
    // A store that accepts the keys but refuses every write stands in for read-only
    // credentials: the default check passes, the write probe fails and says so.
    let prefix = TestS3Prefix::new();
    let proxy = testkit::ReadOnlyS3Proxy::start(&prefix.config);
    let status = expect_up(proxy.config.health(false).await);
    assert!(status.contains("readable"), "{status}");
    let err = proxy.config.health(true).await.unwrap_err().to_string();
    assert!(err.contains("cannot write"), "{err}");
    assert!(proxy.writes_refused() > 0);
}

#[tokio::test]
async fn wrong_secret_key_is_refused_without_echoing_it() {
    let mut config = TestS3Prefix::new().config.clone();
    let S3Credentials::Static { secret_access_key, .. } = &mut config.credentials else {
        panic!("static keys expected")
    };
    *secret_access_key = Secret::new("not-the-s3-secret");
    config.max_attempts = 1;
    let err = config.health(false).await.unwrap_err().to_string();
    assert!(err.contains("is not reachable"), "{err}");
    assert!(!err.contains("not-the-s3-secret"), "{err}");
}

#[tokio::test]
async fn missing_bucket_is_named() {
    let mut config = TestS3Prefix::new().config.clone();
    config.bucket = "no-such-bucket-here".into();
    config.max_attempts = 1;
    let err = config.health(false).await.unwrap_err().to_string();
    assert!(err.contains("bucket no-such-bucket-here is not reachable"), "{err}");
}
