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
    use testkit::servers::{Daemon, RedisOptions, TestRedis, TestRedisCluster, TestSentinel, program, redis_cli};
    use testkit::tls::TestCa;

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
        let down = tokio::time::timeout(Duration::from_secs(60), manager.get::<_, Option<String>>("k")).await;
        assert!(down.expect("a command hung while the server was down").is_err());

        // Back on the same port (empty: nothing is saved): the same object works again.
        server.restart();
        let (result, failures) =
            eventually(&manager, Duration::from_secs(30), async |m| m.set("k", "after").await).await;
        let () = result.unwrap_or_else(|e| panic!("no SET within 30 s of the restart ({failures} failures): {e}"));
        assert_eq!(manager.get::<_, String>("k").await.unwrap(), "after");
        assert_eq!(server.cli(Some("restart-pw"), &["-n", "3", "get", "k"]).trim(), "after");
    }

    #[tokio::test]
    async fn a_wrong_password_fails_at_once() {
        let server = TestRedis::start(&RedisOptions { password: Some("right-pw".into()), ..Default::default() });
        let config = config(vec![("REDIS_URL", format!("redis://:wrong-pw@127.0.0.1:{}/0", server.port))]);
        let err = config.manager().await.unwrap_err();
        assert_eq!(err.kind(), datastores::ErrorKind::Unavailable, "{err}");
        let err = err.to_string();
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
        let (result, failures) = eventually(&manager, Duration::from_secs(60), async |m| {
            for key in &keys {
                let () = m.set(key, "after").await?;
            }
            Ok(())
        })
        .await;
        result.unwrap_or_else(|e| panic!("the cluster did not come back within 60 s ({failures} failures): {e}"));
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while !redis_cli(sentinel.sentinel_port, None, &["client", "list"]).contains(" sub=1 ") {
            assert!(Instant::now() < deadline, "the manager did not subscribe to the Sentinel");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let out = redis_cli(sentinel.sentinel_port, None, &["sentinel", "failover", &sentinel.name]);
        assert!(out.contains("OK"), "{out}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while sentinel.current_master_port() != sentinel.replica.port {
            assert!(Instant::now() < deadline, "the Sentinel did not promote the replica");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // The same object finds the new master at once: a write lands there. (Until the Sentinel
        // demotes the old master, seconds later, the old master still takes writes and loses them.)
        let new_master = &sentinel.replica;
        let (result, failures) = eventually(&manager, Duration::from_secs(30), async |m| {
            let () = m.set("after-failover", "2").await?;
            match new_master.cli(Some(&sentinel.password), &["get", "after-failover"]).trim() {
                "2" => Ok(()),
                other => Err(std::io::Error::other(format!("the new master holds {other:?}")).into()),
            }
        })
        .await;
        let () = result.unwrap_or_else(|e| panic!("no write within 30 s of the failover ({failures} failures): {e}"));
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
        let deadline = Instant::now() + Duration::from_secs(30);
        while sentinel.current_master_port() != sentinel.replica.port {
            assert!(Instant::now() < deadline, "the Sentinel did not promote the replica");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let new_master = &sentinel.replica;
        let (result, failures) = eventually(&manager, Duration::from_secs(30), async |m| {
            let () = m.set("after-failover", "2").await?;
            match new_master.cli(Some(&sentinel.password), &["get", "after-failover"]).trim() {
                "2" => Ok(()),
                other => Err(std::io::Error::other(format!("the new master holds {other:?}")).into()),
            }
        })
        .await;
        let () = result.unwrap_or_else(|e| panic!("no write within 30 s of the failover ({failures} failures): {e}"));
        drop(silent);
    }

    /// Stops the Sentinel's process (SIGSTOP) until dropped: it keeps accepting connections
    /// but answers nothing.
    struct Hanging(String);

    impl Hanging {
        fn sentinel(sentinel: &TestSentinel) -> Hanging {
            let info = redis_cli(sentinel.sentinel_port, None, &["info", "server"]);
            let pid = info.lines().find_map(|l| l.strip_prefix("process_id:")).map(str::trim);
            let pid = pid.unwrap_or_else(|| panic!("no process_id in the Sentinel's INFO: {info}")).to_owned();
            let status = std::process::Command::new("kill").args(["-STOP", &pid]).status().unwrap();
            assert!(status.success(), "kill -STOP {pid}");
            Hanging(pid)
        }
    }

    impl Drop for Hanging {
        fn drop(&mut self) {
            // No panic here: this may run while a failed assertion unwinds.
            let _ = std::process::Command::new("kill").args(["-CONT", &self.0]).status();
        }
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

        let hanging = Hanging::sentinel(&sentinel);
        sentinel.master.daemon.kill();
        // The first command meets the broken connection.
        assert!(manager.get::<_, Option<String>>("k").await.is_err());
        let burst: Vec<_> = (0..8)
            .map(|_| {
                let mut m = manager.clone();
                tokio::spawn(async move { m.get::<_, Option<String>>("k").await.is_err() })
            })
            .collect();
        for task in burst {
            assert!(task.await.unwrap(), "a command succeeded with the master down");
        }
        assert!(manager.get::<_, Option<String>>("k").await.is_err());

        drop(hanging);
        sentinel.master.restart();
        let (result, failures) = eventually(&manager, Duration::from_secs(30), async |m| m.set("k", "2").await).await;
        let () = result.unwrap_or_else(|e| panic!("no SET within 30 s of the restart ({failures} failures): {e}"));
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
        let _hanging = Hanging::sentinel(&sentinel);

        // A blocking command holds up the connection's later commands; at its response timeout
        // (1 s) the manager drops the connection.
        let mut m = manager.clone();
        let blocking = tokio::spawn(async move { m.blpop::<_, Option<(String, String)>>("empty", 5.0).await });
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut m = manager.clone();
        let queued = tokio::spawn(async move { m.get::<_, Option<String>>("k").await.is_err() });
        assert!(blocking.await.unwrap().is_err());
        // The next command asks the stopped Sentinel, for seconds, while the queued command times out.
        let mut m = manager.clone();
        let reconnecting = tokio::spawn(async move { m.get::<_, Option<String>>("k").await });
        assert!(queued.await.unwrap(), "the queued command timed out");
        assert!(reconnecting.await.unwrap().is_err(), "no master while the Sentinel hangs");
    }

    /// Sentinel and data nodes behind TLS with a private CA: `REDIS_CA_CERT` is trusted for the
    /// Sentinel as for the master, by the manager's queries and by its failover listener.
    #[tokio::test]
    async fn sentinel_over_tls_trusts_the_ca_file() {
        testkit::init();
        let dir = tempfile::tempdir().unwrap();
        let files = TestCa::new("dbkit test CA").server_files(dir.path(), "redis", &["localhost", "127.0.0.1"]);
        let password = testkit::unique_name("pw");
        let master = TestRedis::start(&RedisOptions {
            password: Some(password.clone()),
            tls: Some(files.clone()),
            extra: vec![],
        });
        let port = testkit::closed_port();
        let conf = format!(
            "port 0\ntls-port {port}\ntls-cert-file {}\ntls-key-file {}\ntls-ca-cert-file {}\ntls-auth-clients no\n\
             tls-replication yes\nbind 127.0.0.1\ndir {}\nsentinel monitor mymaster 127.0.0.1 {} 1\n\
             sentinel auth-pass mymaster {password}\n",
            files.cert.display(),
            files.key.display(),
            files.ca.display(),
            dir.path().display(),
            master.port,
        );
        std::fs::write(dir.path().join("sentinel.conf"), conf).unwrap();
        let mut command = std::process::Command::new(program("redis-sentinel", "redis-sentinel"));
        command.arg(dir.path().join("sentinel.conf"));
        let _sentinel = Daemon::spawn("sentinel", command, dir.path(), port);
        let tls_cli = |args: &[&str]| {
            let output = std::process::Command::new(program("redis-cli", "redis-tools"))
                .args(["--tls", "--cacert"])
                .arg(&files.ca)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(args)
                .env_remove("REDISCLI_AUTH")
                .output()
                .unwrap();
            String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr)
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tls_cli(&["sentinel", "get-master-addr-by-name", "mymaster"]).contains(&master.port.to_string()) {
            assert!(Instant::now() < deadline, "the Sentinel does not monitor the master");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let settings = |ca: &std::path::Path| {
            config(vec![
                ("REDIS_SENTINEL_NODES", format!("127.0.0.1:{port}")),
                ("REDIS_SENTINEL_MASTER", "mymaster".into()),
                ("REDIS_PASSWORD", password.clone()),
                ("REDIS_CA_CERT", ca.display().to_string()),
            ])
        };
        let mut manager = settings(&files.ca).manager().await.unwrap();
        let () = manager.set("over-tls", "1").await.unwrap();
        assert_eq!(manager.get::<_, String>("over-tls").await.unwrap(), "1");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tls_cli(&["client", "list"]).contains(" sub=1 ") {
            assert!(Instant::now() < deadline, "the manager did not subscribe to the Sentinel over TLS");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }

        // Another CA's certificate is refused.
        let other = TestCa::new("other").server_files(dir.path(), "other", &["localhost"]);
        let err = settings(&other.ca).manager().await.unwrap_err().to_string();
        assert!(err.to_lowercase().contains("certificate"), "{err}");
        // A CA file that cannot be read names its setting.
        let err = settings(&dir.path().join("missing.pem")).manager().await.unwrap_err().to_string();
        assert!(err.contains("REDIS_CA_CERT") && err.contains("missing.pem"), "{err}");
    }
}
