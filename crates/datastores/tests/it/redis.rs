use datastores::{Datastore, RedisConfig, RedisConnection, Secret};
use testkit::{closed_port, expect_up, require, unique_name};

fn config() -> RedisConfig {
    expect_up(RedisConfig::from_settings(&require(Datastore::Redis)))
}

#[tokio::test]
async fn health_reports_the_server_version() {
    let version = expect_up(config().health().await);
    assert!(version.starts_with("Redis 7."), "{version}");
}

#[tokio::test]
async fn commands_run_with_the_configured_password() {
    let config = config();
    assert!(config.password.is_some(), "the stack's Redis requires a password");
    let RedisConnection::Single(mut connection) = expect_up(config.connect().await) else {
        panic!("standalone expected")
    };
    let key = unique_name("test");
    let () = datastores::redis_driver::cmd("SET")
        .arg(&key)
        .arg("v")
        .arg("EX")
        .arg(60)
        .query_async(&mut connection)
        .await
        .unwrap();
    let value: String = datastores::redis_driver::cmd("GET").arg(&key).query_async(&mut connection).await.unwrap();
    assert_eq!(value, "v");
    let _: i64 = datastores::redis_driver::cmd("DEL").arg(&key).query_async(&mut connection).await.unwrap();
}

#[tokio::test]
async fn wrong_password_is_refused_without_echoing_it() {
    let mut config = config();
    config.password = Some(Secret::new("not-the-redis-pw"));
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.contains("Redis at 127.0.0.1:"), "{err}");
    assert!(!err.contains("not-the-redis-pw"), "{err}");
}

#[tokio::test]
async fn closed_port_names_the_host() {
    let mut config = config();
    let port = closed_port();
    config.topology = datastores::RedisTopology::Standalone(datastores::RedisNode { host: "127.0.0.1".into(), port });
    let err = config.health().await.unwrap_err().to_string();
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
}

mod reconnecting {
    use std::time::{Duration, Instant};

    use datastores::redis_driver::{self, AsyncCommands, RedisResult};
    use datastores::{RedisConfig, RedisManager, Settings, Source};
    use testkit::servers::{RedisOptions, TestRedis, TestRedisCluster, TestSentinel, redis_cli};

    fn config(vars: Vec<(&'static str, String)>) -> RedisConfig {
        let mut vars = vars;
        vars.extend([("REDIS_CONNECT_TIMEOUT", "1s".into()), ("REDIS_RESPONSE_TIMEOUT", "1s".into())]);
        RedisConfig::from_settings(&Settings::new().layer(Source::Other("test".into()), vars)).unwrap()
    }

    /// Runs `command` on `manager` until it succeeds, for at most `limit`; the result and how
    /// many attempts failed first.
    async fn eventually<T, F>(manager: &RedisManager, limit: Duration, command: F) -> (RedisResult<T>, usize)
    where
        F: AsyncFn(&mut RedisManager) -> RedisResult<T>,
    {
        let deadline = Instant::now() + limit;
        let mut failures = 0;
        loop {
            // Each attempt on a clone: the clones share one connection, as a service's tasks do.
            let result = command(&mut manager.clone()).await;
            if result.is_ok() || Instant::now() > deadline {
                return (result, failures);
            }
            failures += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn standalone_comes_back_after_a_restart() {
        let mut server = TestRedis::start(&RedisOptions { password: Some("restart-pw".into()), ..Default::default() });
        let config = config(vec![("REDIS_URL", format!("redis://:restart-pw@127.0.0.1:{}/3", server.port))]);
        let mut manager = config.manager().await.unwrap();
        let shown = format!("{manager:?}");
        assert!(shown.contains(&server.port.to_string()) && !shown.contains("restart-pw"), "{shown}");
        let () = manager.set("k", "before").await.unwrap();
        assert_eq!(manager.get::<_, String>("k").await.unwrap(), "before");
        assert_eq!(server.cli(Some("restart-pw"), &["-n", "3", "get", "k"]).trim(), "before", "database 3");

        // Down: commands fail, within the response timeout, rather than hang.
        server.daemon.kill();
        let started = Instant::now();
        assert!(manager.get::<_, Option<String>>("k").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());

        // Back on the same port (empty: nothing is saved): the same object works again.
        server.restart();
        let (result, failures) =
            eventually(&manager, Duration::from_secs(10), async |m| m.set("k", "after").await).await;
        let () = result.unwrap_or_else(|e| panic!("no SET within 10 s of the restart ({failures} failures): {e}"));
        assert_eq!(manager.get::<_, String>("k").await.unwrap(), "after");
        assert_eq!(server.cli(Some("restart-pw"), &["-n", "3", "get", "k"]).trim(), "after");
    }

    #[tokio::test]
    async fn a_wrong_password_fails_at_once() {
        let server = TestRedis::start(&RedisOptions { password: Some("right-pw".into()), ..Default::default() });
        let config = config(vec![("REDIS_URL", format!("redis://:wrong-pw@127.0.0.1:{}/0", server.port))]);
        let started = Instant::now();
        let err = config.manager().await.unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert!(err.contains(&format!("127.0.0.1:{}", server.port)) && !err.contains("wrong-pw"), "{err}");
    }

    #[tokio::test]
    async fn cluster_comes_back_after_a_node_restarts() {
        let mut cluster = tokio::task::spawn_blocking(TestRedisCluster::start).await.unwrap();
        let nodes: Vec<String> = cluster.nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let config =
            config(vec![("REDIS_CLUSTER_NODES", nodes.join(",")), ("REDIS_PASSWORD", cluster.password.clone())]);
        let mut manager = config.manager().await.unwrap();
        assert!(!format!("{manager:?}").contains(&cluster.password));
        let keys: Vec<String> = (0..30).map(|i| format!("key-{i}")).collect();
        for key in &keys {
            let () = manager.set(key, "before").await.unwrap();
        }
        let node = &mut cluster.nodes[1];
        let lost: u32 = node.cli(Some(&cluster.password), &["dbsize"]).trim().parse().unwrap();
        assert!(lost > 0, "the restarted node holds some of the keys");

        node.restart();
        // Every key is written and read again through the same object, whichever node holds it.
        let (result, failures) = eventually(&manager, Duration::from_secs(20), async |m| {
            for key in &keys {
                let () = m.set(key, "after").await?;
            }
            Ok(())
        })
        .await;
        result.unwrap_or_else(|e| panic!("the cluster did not come back within 20 s ({failures} failures): {e}"));
        for key in &keys {
            assert_eq!(manager.get::<_, String>(key).await.unwrap(), "after");
        }
    }

    #[tokio::test]
    async fn sentinel_writes_to_the_new_master_after_a_failover() {
        let sentinel = tokio::task::spawn_blocking(TestSentinel::start).await.unwrap();
        let config = config(vec![
            ("REDIS_SENTINEL_NODES", format!("127.0.0.1:{}", sentinel.sentinel_port)),
            ("REDIS_SENTINEL_MASTER", sentinel.name.clone()),
            ("REDIS_PASSWORD", sentinel.password.clone()),
        ]);
        let mut manager = config.manager().await.unwrap();
        assert!(!format!("{manager:?}").contains(&sentinel.password));
        let () = manager.set("before-failover", "1").await.unwrap();
        assert!(sentinel.master.cli(Some(&sentinel.password), &["get", "before-failover"]).contains('1'));

        // The manager listens for the Sentinel's announcement of a new master.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !redis_cli(sentinel.sentinel_port, None, &["client", "list"]).contains(" sub=1 ") {
            assert!(Instant::now() < deadline, "the manager did not subscribe to the Sentinel");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = redis_cli(sentinel.sentinel_port, None, &["sentinel", "failover", &sentinel.name]);
        assert!(out.contains("OK"), "{out}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while sentinel.current_master_port() != sentinel.replica.port {
            assert!(Instant::now() < deadline, "the Sentinel did not promote the replica");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The same object finds the new master at once: a write lands there. (Until the Sentinel
        // demotes the old master, seconds later, the old master still takes writes and loses them.)
        let promoted = Instant::now();
        let new_master = &sentinel.replica;
        let (result, failures) = eventually(&manager, Duration::from_secs(15), async |m| {
            let () = m.set("after-failover", "2").await?;
            match new_master.cli(Some(&sentinel.password), &["get", "after-failover"]).trim() {
                "2" => Ok(()),
                other => Err(std::io::Error::other(format!("the new master holds {other:?}")).into()),
            }
        })
        .await;
        let () = result.unwrap_or_else(|e| panic!("no write within 15 s of the failover ({failures} failures): {e}"));
        assert!(promoted.elapsed() < Duration::from_secs(3), "followed only after {:?}", promoted.elapsed());
        let role: Vec<redis_driver::Value> = redis_driver::cmd("ROLE").query_async(&mut manager).await.unwrap();
        assert!(format!("{role:?}").contains("master"), "{role:?}");
    }

    /// The failover starts as soon as `manager()` returns and is over before the manager listens
    /// for announcements: the first Sentinel listed accepts connections but never answers, so
    /// subscribing takes the connect and response timeouts (4 s) before the manager moves on to
    /// the real one. The switch it missed must not keep it on the old master, which takes writes
    /// (and loses them) until the Sentinel demotes it many seconds later.
    #[tokio::test]
    async fn sentinel_follows_a_failover_it_did_not_hear_about() {
        let sentinel = tokio::task::spawn_blocking(TestSentinel::start).await.unwrap();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_port = silent.local_addr().unwrap().port();
        let config = config(vec![
            ("REDIS_SENTINEL_NODES", format!("127.0.0.1:{silent_port},127.0.0.1:{}", sentinel.sentinel_port)),
            ("REDIS_SENTINEL_MASTER", sentinel.name.clone()),
            ("REDIS_PASSWORD", sentinel.password.clone()),
            ("REDIS_CONNECT_TIMEOUT", "2s".into()),
            ("REDIS_RESPONSE_TIMEOUT", "2s".into()),
        ]);
        let manager = config.manager().await.unwrap();
        let out = redis_cli(sentinel.sentinel_port, None, &["sentinel", "failover", &sentinel.name]);
        assert!(out.contains("OK"), "{out}");
        let deadline = Instant::now() + Duration::from_secs(15);
        while sentinel.current_master_port() != sentinel.replica.port {
            assert!(Instant::now() < deadline, "the Sentinel did not promote the replica");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let promoted = Instant::now();
        let new_master = &sentinel.replica;
        let (result, failures) = eventually(&manager, Duration::from_secs(15), async |m| {
            let () = m.set("after-failover", "2").await?;
            match new_master.cli(Some(&sentinel.password), &["get", "after-failover"]).trim() {
                "2" => Ok(()),
                other => Err(std::io::Error::other(format!("the new master holds {other:?}")).into()),
            }
        })
        .await;
        let () = result.unwrap_or_else(|e| panic!("no write within 15 s of the failover ({failures} failures): {e}"));
        eprintln!("TIMING followed after {:?}", promoted.elapsed());
        assert!(promoted.elapsed() < Duration::from_secs(6), "followed only after {:?}", promoted.elapsed());
        drop(silent);
    }

    /// Sends `signal` (`STOP`, `CONT`) to the Sentinel's process.
    fn signal_sentinel(sentinel: &TestSentinel, signal: &str) {
        let info = redis_cli(sentinel.sentinel_port, None, &["info", "server"]);
        let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).map(str::trim).unwrap_or_else(|| {
            panic!("no process_id in the Sentinel's INFO: {info}");
        });
        let status = std::process::Command::new("kill").args([&format!("-{signal}"), pid]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// With the master gone and the Sentinel hanging, a burst of commands fails within one
    /// connect budget (here 2 s): the callers share one attempt to reach the master instead of
    /// making one each in turn. Right after, callers get that failure at once; once the Sentinel
    /// and the master are back, commands work again.
    #[tokio::test]
    async fn sentinel_callers_fail_together_while_the_sentinel_hangs() {
        let mut sentinel = tokio::task::spawn_blocking(TestSentinel::start).await.unwrap();
        let config = config(vec![
            ("REDIS_SENTINEL_NODES", format!("127.0.0.1:{}", sentinel.sentinel_port)),
            ("REDIS_SENTINEL_MASTER", sentinel.name.clone()),
            ("REDIS_PASSWORD", sentinel.password.clone()),
        ]);
        let mut manager = config.manager().await.unwrap();
        let () = manager.set("k", "1").await.unwrap();

        signal_sentinel(&sentinel, "STOP");
        sentinel.master.daemon.kill();
        // The first command meets the broken connection.
        assert!(manager.get::<_, Option<String>>("k").await.is_err());
        let started = Instant::now();
        let burst: Vec<_> = (0..8)
            .map(|_| {
                let mut m = manager.clone();
                tokio::spawn(async move { (m.get::<_, Option<String>>("k").await.is_err(), started.elapsed()) })
            })
            .collect();
        for task in burst {
            let (failed, elapsed) = task.await.unwrap();
            eprintln!("TIMING burst {failed} {elapsed:?}");
            assert!(failed, "a command succeeded with the master down");
            assert!(elapsed < Duration::from_secs(3), "a command failed only after {elapsed:?}");
        }
        let started = Instant::now();
        assert!(manager.get::<_, Option<String>>("k").await.is_err());
        eprintln!("TIMING fast {:?}", started.elapsed());
        assert!(started.elapsed() < Duration::from_millis(300), "no fast failure: {:?}", started.elapsed());

        signal_sentinel(&sentinel, "CONT");
        sentinel.master.restart();
        let (result, failures) = eventually(&manager, Duration::from_secs(20), async |m| m.set("k", "2").await).await;
        let () = result.unwrap_or_else(|e| panic!("no SET within 20 s of the restart ({failures} failures): {e}"));
    }

    /// A command that timed out returns its error when it times out, even while another caller
    /// is asking the (hanging) Sentinels for the master.
    #[tokio::test]
    async fn sentinel_failed_command_does_not_wait_for_a_reconnect() {
        let sentinel = tokio::task::spawn_blocking(TestSentinel::start).await.unwrap();
        let config = config(vec![
            ("REDIS_SENTINEL_NODES", format!("127.0.0.1:{}", sentinel.sentinel_port)),
            ("REDIS_SENTINEL_MASTER", sentinel.name.clone()),
            ("REDIS_PASSWORD", sentinel.password.clone()),
        ]);
        let manager = config.manager().await.unwrap();
        signal_sentinel(&sentinel, "STOP");

        // A blocking command holds up the connection's later commands; at its response timeout
        // (1 s) the manager drops the connection.
        let started = Instant::now();
        let mut m = manager.clone();
        let blocking = tokio::spawn(async move { m.blpop::<_, Option<(String, String)>>("empty", 5.0).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut m = manager.clone();
        let queued = tokio::spawn(async move {
            let sent = Instant::now();
            (m.get::<_, Option<String>>("k").await.is_err(), sent.elapsed())
        });
        assert!(blocking.await.unwrap().is_err());
        // The next command asks the stopped Sentinel, for seconds, while the queued command times out.
        let mut m = manager.clone();
        let reconnecting = tokio::spawn(async move { m.get::<_, Option<String>>("k").await });
        let (failed, elapsed) = queued.await.unwrap();
        eprintln!("TIMING queued {failed} {elapsed:?} at {:?}", started.elapsed());
        assert!(failed, "the queued command timed out");
        assert!(elapsed < Duration::from_millis(1500), "the failed command returned only after {elapsed:?}");
        let r = reconnecting.await.unwrap();
        eprintln!("TIMING reconnect {:?} at {:?}", r.is_ok(), started.elapsed());
        signal_sentinel(&sentinel, "CONT");
    }
}
