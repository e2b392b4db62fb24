//! Job runs pushed to a real Pushgateway of the test's own.

use std::time::{Duration, Instant, UNIX_EPOCH};

use datastores::Secret;
use datastores::push::{self, JobRun, PushError};
use testkit::servers::Pushgateway;

const TIMEOUT: Duration = Duration::from_secs(10);

fn at(run: JobRun, unix: u64) -> JobRun {
    JobRun { finished: UNIX_EPOCH + Duration::from_secs(unix), ..run }
}

#[tokio::test]
async fn a_failed_run_keeps_the_last_success_of_the_good_one() {
    let gateway = Pushgateway::start();
    // The credentials are sent as basic auth, which this Pushgateway does not ask for.
    let url = Secret::new(format!("http://pusher:p%40ss@127.0.0.1:{}/", gateway.port));
    let labels = [("job", "it_push"), ("instance", "db/one two")];

    let good = JobRun::new("it_push", true, Duration::from_millis(2500))
        .label("instance", "db/one two")
        .gauge("it_push_rows_removed", "Rows removed by the run.", 1234.0)
        .counter("it_push_batches_total", "Batches of the run.", 7);
    push::push(&url, &at(good, 1_700_000_000), TIMEOUT).await.unwrap();
    assert_eq!(gateway.value(push::SUCCESS, &labels), Some(1.0));
    assert_eq!(gateway.value(push::DURATION, &labels), Some(2.5));
    assert_eq!(gateway.value(push::LAST_RUN, &labels), Some(1.7e9));
    assert_eq!(gateway.value(push::LAST_SUCCESS, &labels), Some(1.7e9));
    assert_eq!(gateway.value("it_push_rows_removed", &labels), Some(1234.0));
    assert_eq!(gateway.value("it_push_batches_total", &labels), Some(7.0));

    // The failure leaves out the last success and the rows: both keep the good run's values.
    let bad = JobRun::new("it_push", false, Duration::from_secs(9)).label("instance", "db/one two");
    push::push(&url, &at(bad, 1_700_000_600), TIMEOUT).await.unwrap();
    assert_eq!(gateway.value(push::SUCCESS, &labels), Some(0.0));
    assert_eq!(gateway.value(push::DURATION, &labels), Some(9.0));
    assert_eq!(gateway.value(push::LAST_RUN, &labels), Some(1_700_000_600.0));
    assert_eq!(gateway.value(push::LAST_SUCCESS, &labels), Some(1.7e9));
    assert_eq!(gateway.value("it_push_rows_removed", &labels), Some(1234.0));

    // Another group of the same job is another series; the first one is untouched.
    let other = JobRun::new("it_push", true, Duration::ZERO).label("instance", "");
    push::push(&url, &at(other, 1_700_001_000), TIMEOUT).await.unwrap();
    assert_eq!(gateway.value(push::LAST_SUCCESS, &[("job", "it_push"), ("instance", "")]), Some(1_700_001_000.0));
    assert_eq!(gateway.value(push::LAST_SUCCESS, &labels), Some(1.7e9));
}

#[tokio::test]
async fn no_error_shows_the_credentials_of_the_address() {
    let secret = "s3cr3t-pushpass";
    let run = JobRun::new("it_push_errors", true, Duration::from_secs(1));
    let check = |error: &PushError| {
        for text in [error.to_string(), format!("{error:?}")] {
            assert!(!text.contains(secret) && !text.contains("user:"), "{text}");
        }
    };

    // Nothing listens.
    let url = Secret::new(format!("http://user:{secret}@127.0.0.1:{}/path?token={secret}", testkit::closed_port()));
    let error = push::push(&url, &run, TIMEOUT).await.unwrap_err();
    assert!(matches!(&error, PushError::Unreachable { host, .. } if host.starts_with("127.0.0.1:")), "{error}");
    check(&error);

    // A server that never answers: the timeout ends the push.
    let silent = testkit::SilentServer::start();
    let url = Secret::new(format!("http://user:{secret}@127.0.0.1:{}", silent.port));
    let started = Instant::now();
    let error = push::push(&url, &run, Duration::from_millis(500)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20), "{:?}", started.elapsed());
    assert!(matches!(error, PushError::Unreachable { .. }), "{error}");
    check(&error);

    // The Pushgateway refuses a series whose type differs from the same name's in another group.
    let gateway = Pushgateway::start();
    let url = Secret::new(format!("http://user:{secret}@127.0.0.1:{}", gateway.port));
    let gauge = JobRun::new("it_push_errors", true, Duration::ZERO).gauge("it_push_things_total", "Things.", 1.0);
    push::push(&url, &gauge, TIMEOUT).await.unwrap();
    let counter = JobRun::new("it_push_errors", true, Duration::ZERO).label("instance", "b").counter(
        "it_push_things_total",
        "Things.",
        1,
    );
    let error = push::push(&url, &counter, TIMEOUT).await.unwrap_err();
    assert!(matches!(&error, PushError::Rejected { status, .. } if status.starts_with("400")), "{error}");
    check(&error);
}
