//! `recommend-service`: an example of an application service over dbkit's libraries, the way
//! a service of the recommendation platform links them.
//!
//! At start it reads its configuration from the environment (the variables of the README's
//! configuration reference, `_FILE` secrets included), migrates the recommendation database
//! with the migrations `recommend-db` compiles in, builds its PostgreSQL pool and Redis
//! connection (and, when `MILVUS_URI` or `MILVUS_HOST` is set, opens Milvus through
//! `vector-admin`), checks them, and serves HTTP until SIGTERM or Ctrl-C:
//!
//! - `GET /healthz`: each datastore's health as JSON; 200 when all are healthy, else 503.
//! - `GET /items/{id}`: an item of the `items` table, from the Redis cache when it holds it,
//!   else from PostgreSQL (then cached for `ITEM_CACHE_TTL`); `source` says which. 404 for an
//!   unknown id.
//!
//! Its own variables: `LISTEN_ADDR` (`host:port`) or `PORT` (on all interfaces; default 8080),
//! `ITEM_CACHE_TTL` (default `300s`), `ITEM_CACHE_PREFIX` (default `recommend-service:item:`),
//! `RUN_MIGRATIONS` (default `true`). Logs go to stderr (`RUST_LOG`, default `info`;
//! `LOG_FORMAT=json`).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use datastores::deadpool_postgres::Pool;
use datastores::redis_driver::{self as redis, AsyncCommands};
use datastores::{Datastore, MilvusConfig, PostgresConfig, RedisConfig, RedisManager, Settings, Source};
use recommend_db::migrations::{DEFAULT_PARTITIONS_AHEAD, MIGRATIONS};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;
use vector_admin::{MilvusStore, VectorStore};

/// How long `/healthz` waits for each datastore.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// The service's configuration: the datastores' from `datastores`, and its own.
#[derive(Debug)]
struct Config {
    postgres: PostgresConfig,
    redis: RedisConfig,
    /// Milvus, where the embeddings live, when `MILVUS_URI` or `MILVUS_HOST` is set.
    milvus: Option<MilvusConfig>,
    listen: SocketAddr,
    run_migrations: bool,
    cache_ttl: Duration,
    cache_prefix: String,
}

impl Config {
    fn from_settings(settings: &Settings) -> anyhow::Result<Config> {
        let listen = match settings.get_parsed("LISTEN_ADDR", |text| {
            text.parse::<SocketAddr>().map_err(|e| format!("{text:?} is not host:port ({e})"))
        })? {
            Some(address) => address,
            None => SocketAddr::from(([0, 0, 0, 0], settings.port("PORT")?.unwrap_or(8080))),
        };
        let cache_ttl = settings.duration("ITEM_CACHE_TTL")?.unwrap_or(Duration::from_secs(300));
        if cache_ttl < Duration::from_secs(1) {
            anyhow::bail!("ITEM_CACHE_TTL must be at least 1s");
        }
        Ok(Config {
            postgres: PostgresConfig::from_settings(settings)?,
            redis: RedisConfig::from_settings(settings)?,
            milvus: match configured(settings, Datastore::Milvus)? {
                true => Some(MilvusConfig::from_settings(settings)?),
                false => None,
            },
            listen,
            run_migrations: settings.boolean("RUN_MIGRATIONS")?.unwrap_or(true),
            cache_ttl,
            cache_prefix: settings
                .get("ITEM_CACHE_PREFIX")?
                .map_or_else(|| "recommend-service:item:".to_owned(), |v| v.text),
        })
    }
}

/// Whether any variable that configures `datastore` is set.
fn configured(settings: &Settings, datastore: Datastore) -> anyhow::Result<bool> {
    for name in datastores::triggers(datastore) {
        if settings.get(name)?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// What every request handler shares; clones share the pool and the Redis connection.
#[derive(Clone, Debug)]
struct App {
    pool: Pool,
    redis: RedisManager,
    milvus: Option<MilvusStore>,
    cache_ttl: Duration,
    cache_prefix: String,
}

fn main() -> ExitCode {
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logging to stderr, and one rustls crypto provider for the process (the drivers link rustls;
/// without a default, TLS set-up could not choose between providers).
fn init_logging() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if std::env::var("LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run() -> anyhow::Result<()> {
    let settings = Settings::new()
        .layer(Source::Environment, std::env::vars())
        .layer(Source::Other("default".into()), [("POSTGRES_APPLICATION_NAME", "recommend-service")]);
    let config = Config::from_settings(&settings)?;
    tracing::info!(postgres = %config.postgres, redis = %config.redis, "starting");

    if config.run_migrations {
        // Under a name of its own: a migrator waits for running statements of sessions with its
        // application_name, and the pools of other replicas must not look like those.
        let mut migrator = config.postgres.clone();
        migrator.application_name = format!("{}-migrate", config.postgres.application_name);
        let report = MIGRATIONS
            .migrate(&migrator, &recommend_db::migrations::config(DEFAULT_PARTITIONS_AHEAD))
            .await
            .context("cannot migrate the database")?;
        for warning in &report.warnings {
            tracing::warn!("migrate: {warning}");
        }
        let applied: Vec<&str> = report.applied.iter().map(|a| a.script.as_str()).collect();
        tracing::info!(
            applied = ?applied,
            version = report.version_after.as_deref().unwrap_or("-"),
            "database migrated"
        );
    }

    let app = App {
        pool: config.postgres.pool().await?,
        redis: config.redis.manager().await?,
        milvus: match &config.milvus {
            Some(milvus) => Some(MilvusStore::connect(milvus).await?),
            None => None,
        },
        cache_ttl: config.cache_ttl,
        cache_prefix: config.cache_prefix,
    };
    let (healthy, report) = health(&app).await;
    if !healthy {
        anyhow::bail!("a datastore is unhealthy at start: {report}");
    }

    // Installed before the port opens, so that a SIGTERM from then on stops the service gently.
    let stop = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    let router = Router::new().route("/healthz", get(healthz)).route("/items/{id}", get(item)).with_state(app);
    axum::serve(listener, router).with_graceful_shutdown(stop).await.context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C; the server then finishes the
/// requests in flight and returns.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    Ok(async move {
        #[cfg(unix)]
        let terminated = terminate.recv();
        #[cfg(not(unix))]
        let terminated = std::future::pending::<Option<()>>();
        tokio::select! {
            _ = terminated => tracing::info!("SIGTERM: finishing requests in flight"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted: finishing requests in flight"),
        }
    })
}

/// Each datastore's health through the service's own pool and connection, each within
/// [`HEALTH_TIMEOUT`]: whether all are healthy, and the report.
async fn health(app: &App) -> (bool, serde_json::Value) {
    let postgres = async {
        let client = app.pool.get().await.map_err(|e| datastores::error_chain(&e))?;
        let row = client
            .query_one("SELECT current_setting('server_version')", &[])
            .await
            .map_err(|e| datastores::error_chain(&e))?;
        Ok::<_, String>(format!("PostgreSQL {}", row.get::<_, String>(0)))
    };
    let redis = async {
        let mut connection = app.redis.clone();
        let pong: String = redis::cmd("PING").query_async(&mut connection).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(pong)
    };
    // vector-admin's view of Milvus: its version and health check, and the collections there.
    let milvus = async {
        let Some(store) = &app.milvus else { return Ok(None) };
        let server = store.server().await.map_err(|e| e.to_string())?;
        if !server.healthy {
            return Err(format!("Milvus {} is unhealthy: {}", server.version, server.notes.join("; ")));
        }
        let collections = store.list().await.map_err(|e| e.to_string())?;
        Ok(Some(format!("Milvus {}, {} collections", server.version, collections.len())))
    };
    let (postgres, redis, milvus) = tokio::join!(
        within(HEALTH_TIMEOUT, postgres),
        within(HEALTH_TIMEOUT, redis),
        tokio::time::timeout(HEALTH_TIMEOUT, milvus)
    );
    let milvus = milvus.unwrap_or_else(|_| Err(format!("no answer within {HEALTH_TIMEOUT:?}")));
    let status = |result: &Result<String, String>| match result {
        Ok(detail) => json!({ "healthy": true, "detail": detail }),
        Err(error) => json!({ "healthy": false, "error": error }),
    };
    let healthy = postgres.is_ok() && redis.is_ok() && milvus.is_ok();
    let mut report = json!({
        "status": if healthy { "ok" } else { "unhealthy" },
        "postgres": status(&postgres),
        "redis": status(&redis),
    });
    match milvus {
        Ok(None) => {}
        Ok(Some(detail)) => report["milvus"] = status(&Ok(detail)),
        Err(error) => report["milvus"] = status(&Err(error)),
    }
    (healthy, report)
}

async fn within(limit: Duration, check: impl Future<Output = Result<String, String>>) -> Result<String, String> {
    tokio::time::timeout(limit, check).await.unwrap_or_else(|_| Err(format!("no answer within {limit:?}")))
}

async fn healthz(State(app): State<App>) -> Response {
    let (healthy, report) = health(&app).await;
    let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(report)).into_response()
}

/// A row of `items` (V001), as the API returns and the cache holds it.
#[derive(Debug, Serialize, Deserialize)]
struct Item {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    description: Option<String>,
    category: Option<String>,
    subcategory: Option<String>,
    tags: Vec<String>,
    semantic_id: Option<Vec<i32>>,
    metadata: serde_json::Value,
    status: String,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn error(code: StatusCode, message: impl Into<String>) -> Response {
    (code, Json(json!({ "error": message.into() }))).into_response()
}

async fn item(State(app): State<App>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return error(StatusCode::BAD_REQUEST, format!("{id:?} is not a UUID"));
    };
    let key = format!("{}{id}", app.cache_prefix);
    let mut cache = app.redis.clone();
    // The cache only speeds reads up: when Redis fails, the item comes from PostgreSQL.
    match cache.get::<_, Option<String>>(&key).await {
        Ok(Some(cached)) => match serde_json::from_str::<Item>(&cached) {
            Ok(item) => return Json(json!({ "source": "cache", "item": item })).into_response(),
            Err(e) => tracing::warn!(%key, error = %e, "unreadable cache entry; reading PostgreSQL"),
        },
        Ok(None) => {}
        Err(e) => tracing::warn!(%key, error = %e, "cannot read the cache; reading PostgreSQL"),
    }
    let item = match read_item(&app.pool, id).await {
        Ok(Some(item)) => item,
        Ok(None) => return error(StatusCode::NOT_FOUND, format!("no item {id}")),
        Err(e) => {
            tracing::error!(%id, error = %e, "cannot read the item");
            return error(StatusCode::SERVICE_UNAVAILABLE, "cannot read the item; try again");
        }
    };
    match serde_json::to_string(&item) {
        Ok(text) => {
            if let Err(e) = cache.set_ex::<_, _, ()>(&key, text, app.cache_ttl.as_secs()).await {
                tracing::warn!(%key, error = %e, "cannot cache the item");
            }
        }
        Err(e) => tracing::warn!(%id, error = %e, "cannot serialize the item for the cache"),
    }
    Json(json!({ "source": "postgres", "item": item })).into_response()
}

async fn read_item(pool: &Pool, id: Uuid) -> anyhow::Result<Option<Item>> {
    let client = pool.get().await?;
    let row = client
        .query_opt(
            "SELECT id, type, title, description, category, subcategory, tags, semantic_id, metadata, status, \
             created_at, updated_at FROM items WHERE id = $1",
            &[&id],
        )
        .await?;
    let Some(row) = row else { return Ok(None) };
    Ok(Some(Item {
        id: row.try_get::<_, Uuid>("id")?.to_string(),
        kind: row.try_get("type")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        category: row.try_get("category")?,
        subcategory: row.try_get("subcategory")?,
        tags: row.try_get("tags")?,
        semantic_id: row.try_get("semantic_id")?,
        metadata: row.try_get("metadata")?,
        status: row.try_get("status")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    }))
}
