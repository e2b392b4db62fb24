//! `seed`: realistic, reproducible test data, loaded with COPY.
//!
//! Everything comes from one ChaCha8 generator seeded with `--seed`, and timestamps count back
//! from `until` (midnight UTC of the given day, today by default), so the same options give the
//! same rows. Shapes: a few items take most interactions (Zipf), a few users are very active,
//! behaviours come in sessions of several events minutes apart, and actions follow funnel
//! ratios (many views, fewer clicks, few purchases).

use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Duration as ChronoDuration, NaiveDate, Utc};
use datastores::tokio_postgres::Client;
use futures::SinkExt;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::Error;

/// More rows than this in one table is a typo, not a test database.
pub const MAX_ROWS: u64 = 1_000_000_000;

/// What [`seed`] generates. The same options, `seed` and `until` included, give the same rows.
#[derive(Clone, Debug)]
pub struct SeedOptions {
    /// Users to create (at most [`MAX_ROWS`]).
    pub users: u64,
    /// Items to create (at most [`MAX_ROWS`]).
    pub items: u64,
    /// User behaviours (views, clicks, purchases, ...) to create, in sessions (at most
    /// [`MAX_ROWS`]); they need at least one user and one item.
    pub behaviors: u64,
    /// Recommendation requests; each has 10 results.
    pub requests: u64,
    /// Months of history the behaviours and requests cover.
    pub months: u32,
    /// The random generator's seed.
    pub seed: u64,
    /// The data ends at midnight UTC of this day.
    pub until: NaiveDate,
    /// Also fill item_embeddings and user_embeddings (256 dimensions).
    pub embeddings: bool,
    /// Remove existing data first.
    pub clean: bool,
}

impl SeedOptions {
    /// Checks the counts (at most [`MAX_ROWS`]; behaviours and requests need users and items)
    /// and `months` (1 to 60); [`Error::Invalid`] names the flag at fault. [`seed`] calls it first.
    pub fn validate(&self) -> Result<(), Error> {
        for (flag, value) in [
            ("--users", self.users),
            ("--items", self.items),
            ("--behaviors", self.behaviors),
            ("--requests", self.requests),
        ] {
            if value > MAX_ROWS {
                return Err(Error::Invalid(format!("{flag} {value} is more than the limit of {MAX_ROWS}")));
            }
        }
        if (self.behaviors > 0 || self.requests > 0) && (self.users == 0 || self.items == 0) {
            return Err(Error::Invalid(
                "behaviours and requests need at least one user and one item (--users, --items)".into(),
            ));
        }
        if !(1..=60).contains(&self.months) {
            return Err(Error::Invalid(format!("--months {} must be between 1 and 60", self.months)));
        }
        Ok(())
    }
}

/// Which part is being loaded, for progress display.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// `users`.
    Users,
    /// `items`.
    Items,
    /// `user_behaviors`.
    Behaviors,
    /// `recommendation_requests`.
    Requests,
    /// `recommendation_results`.
    Results,
    /// `item_embeddings` and `user_embeddings`.
    Embeddings,
    /// Rebuilding indexes, then `item_stats`, `user_profiles`, statistics and the materialized
    /// views, from the loaded rows.
    Derived,
}

/// How far a phase has got, passed to [`seed`]'s `progress` callback as rows stream in.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    /// The phase running.
    pub phase: Phase,
    /// Rows of the phase written so far (for `Derived`, 0 then 1).
    pub done: u64,
    /// Rows the phase writes in all.
    pub total: u64,
}

/// What [`seed`] loaded: rows per table as COPY counted them, and the time taken.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SeedReport {
    /// Rows in `users`.
    pub users: u64,
    /// Rows in `items`.
    pub items: u64,
    /// Rows in `user_behaviors`.
    pub behaviors: u64,
    /// Rows in `recommendation_requests`.
    pub requests: u64,
    /// Rows in `recommendation_results` (10 per request).
    pub results: u64,
    /// Rows in `item_embeddings` (0 without `embeddings`).
    pub item_embeddings: u64,
    /// Rows in `user_embeddings` (0 without `embeddings`).
    pub user_embeddings: u64,
    /// Monthly partitions created so that every generated row has one.
    pub partitions_created: usize,
    /// Time in all, in seconds.
    pub seconds: f64,
    /// Where the time went, phase by phase; `derived` includes rebuilding the indexes.
    pub phases: Vec<PhaseTime>,
}

/// The time one phase took.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct PhaseTime {
    /// The phase.
    pub phase: Phase,
    /// Its duration in seconds.
    pub seconds: f64,
}

/// Records the time since the previous phase ended.
struct Laps(Instant);

impl Laps {
    fn lap(&mut self, phase: Phase, report: &mut SeedReport) {
        let now = Instant::now();
        report.phases.push(PhaseTime { phase, seconds: (now - self.0).as_secs_f64() });
        self.0 = now;
    }
}

const DATA_TABLES: &str = "user_behaviors, recommendation_results, recommendation_requests, user_experiment_assignments, \
                           experiment_metrics, experiments, user_embeddings, item_embeddings, user_profiles, item_stats, items, users";

/// Loads the data. `progress` is called as rows stream in.
pub async fn seed(
    client: &Client,
    options: &SeedOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
) -> Result<SeedReport, Error> {
    options.validate()?;
    let started = Instant::now();
    let schema_ready: bool = client
        .query_one("SELECT to_regclass('users') IS NOT NULL AND to_regclass('item_embeddings') IS NOT NULL", &[])
        .await
        .map_err(|e| Error::db("cannot inspect the database", e))?
        .get(0);
    if !schema_ready {
        return Err(Error::NotFound(
            "the schema is missing: run recommend-db init --run-migrations (or --full) first".into(),
        ));
    }
    // One transaction: a failed or interrupted seed leaves the database as it was.
    client.batch_execute("BEGIN").await.map_err(|e| Error::db("cannot begin", e))?;
    match seed_in_transaction(client, options, progress, started).await {
        Ok(report) => {
            client.batch_execute("COMMIT").await.map_err(|e| Error::db("cannot commit the seed data", e))?;
            Ok(report)
        }
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn seed_in_transaction(
    client: &Client,
    options: &SeedOptions,
    progress: &mut (dyn FnMut(Progress) + Send),
    started: Instant,
) -> Result<SeedReport, Error> {
    if options.clean {
        client
            .batch_execute(&format!("TRUNCATE {DATA_TABLES}"))
            .await
            .map_err(|e| Error::db("cannot clean the data tables", e))?;
    } else {
        let existing: i64 = client
            .query_one("SELECT (SELECT count(*) FROM users) + (SELECT count(*) FROM items)", &[])
            .await
            .map_err(|e| Error::db("cannot count existing rows", e))?
            .get(0);
        if existing > 0 {
            return Err(Error::NeedsConsent(format!(
                "the database already holds {existing} users and items; pass --clean to replace all data"
            )));
        }
    }

    // Loading into empty tables and building the indexes afterwards is several times faster
    // than maintaining them row by row (HNSW and GIN above all), as pg_restore does.
    let indexes = deferrable_indexes(client).await?;
    for (name, _) in &indexes {
        client
            .batch_execute(&format!("DROP INDEX {name}"))
            .await
            .map_err(|e| Error::db(format!("cannot drop index {name}"), e))?;
    }

    let until: DateTime<Utc> = options.until.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let start = until - ChronoDuration::days(30 * i64::from(options.months));
    let months_back = months_between(start, Utc::now()) + 1;
    let partitions =
        crate::partitions::ensure(client, months_back, crate::migrations::DEFAULT_PARTITIONS_AHEAD).await?;
    let mut report =
        SeedReport { partitions_created: partitions.iter().filter(|p| p.created).count(), ..SeedReport::default() };

    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut g = Generator { rng: &mut rng };
    let mut laps = Laps(Instant::now());

    // Users.
    let mut user_ids = Vec::with_capacity(options.users as usize);
    let mut copy = Copy::new(client, "COPY users (id, name, email, password_hash, age, gender, country, city, metadata, status, created_at) FROM STDIN").await?;
    for n in 0..options.users {
        let id = g.uuid();
        let first = pick(g.rng, FIRST_NAMES);
        let last = pick(g.rng, LAST_NAMES);
        let (country, cities) = COUNTRIES[weighted(g.rng, &COUNTRY_WEIGHTS)];
        let city = pick(g.rng, cities);
        let age = (g.normal(34.0, 12.0).round() as i64).clamp(13, 90);
        let gender = GENDERS[weighted(g.rng, &[46, 46, 3, 5])];
        let status = USER_STATUS[weighted(g.rng, &[940, 40, 15, 5])];
        let channel = pick(g.rng, &["organic", "ads", "referral", "social", "email"]);
        let created = g.time_between(until - ChronoDuration::days(730), until);
        let hash = format!("$2b$12${:016x}{:016x}{:016x}", g.rng.next_u64(), g.rng.next_u64(), g.rng.next_u64());
        copy.row(&[
            &id,
            &format!("{first} {last}"),
            &format!("{}.{}{n}@example.com", first.to_lowercase(), last.to_lowercase()),
            &hash,
            &age.to_string(),
            gender,
            country,
            city,
            &format!("{{\"signup_channel\":\"{channel}\",\"newsletter\":{}}}", g.rng.random_bool(0.3)),
            status,
            &timestamp(created),
        ])
        .await?;
        user_ids.push(id);
        if n % 2048 == 0 {
            progress(Progress { phase: Phase::Users, done: n, total: options.users });
        }
    }
    report.users = copy.finish().await?;
    progress(Progress { phase: Phase::Users, done: options.users, total: options.users });
    laps.lap(Phase::Users, &mut report);

    // Items.
    let mut item_ids = Vec::with_capacity(options.items as usize);
    let mut copy = Copy::new(
        client,
        "COPY items (id, type, title, description, category, subcategory, tags, semantic_id, metadata, status, created_at) FROM STDIN",
    )
    .await?;
    for n in 0..options.items {
        let id = g.uuid();
        let kind = weighted(g.rng, &[10, 45, 20, 25]);
        let (type_name, categories) = ITEM_TYPES[kind];
        let category_index = g.rng.random_range(0..categories.len());
        let category = categories[category_index];
        let subcategory = format!("{category}-{}", pick(g.rng, &["classic", "new", "premium", "indie", "popular"]));
        let title = format!("{} {} {}", pick(g.rng, ADJECTIVES), pick(g.rng, NOUNS), n);
        let tag_count = g.rng.random_range(1..=5);
        let tags: Vec<&str> = (0..tag_count).map(|_| pick(g.rng, TAGS)).collect();
        let metadata = match type_name {
            "product" => format!("{{\"price\":{:.2},\"brand\":\"{}\"}}", g.lognormal(3.5, 0.9), pick(g.rng, BRANDS)),
            "video" => format!("{{\"duration_s\":{}}}", g.rng.random_range(15..3600)),
            "movie" => format!(
                "{{\"year\":{},\"rating\":{:.1}}}",
                g.rng.random_range(1960..2027),
                g.rng.random_range(10..100) as f64 / 10.0
            ),
            _ => format!("{{\"words\":{}}}", g.rng.random_range(200..5000)),
        };
        let status = ITEM_STATUS[weighted(g.rng, &[900, 80, 20])];
        let created = g.time_between(until - ChronoDuration::days(1095), until);
        copy.row(&[
            &id,
            type_name,
            &title,
            &format!(
                "A {} {type_name} about {}.",
                pick(g.rng, ADJECTIVES).to_lowercase(),
                pick(g.rng, NOUNS).to_lowercase()
            ),
            category,
            &subcategory,
            &format!("{{{}}}", tags.join(",")),
            &format!("{{{kind},{category_index},{}}}", g.rng.random_range(0..256)),
            &metadata,
            status,
            &timestamp(created),
        ])
        .await?;
        item_ids.push(id);
        if n % 2048 == 0 {
            progress(Progress { phase: Phase::Items, done: n, total: options.items });
        }
    }
    report.items = copy.finish().await?;
    progress(Progress { phase: Phase::Items, done: options.items, total: options.items });
    laps.lap(Phase::Items, &mut report);

    let item_popularity = Zipf::new(item_ids.len(), 1.07);
    let user_activity = Zipf::new(user_ids.len(), 0.8);

    // Behaviours, in sessions.
    let mut copy = Copy::new(
        client,
        "COPY user_behaviors (id, user_id, item_id, action, value, context, session_id, device_type, created_at) FROM STDIN",
    )
    .await?;
    let mut written = 0u64;
    while written < options.behaviors {
        let user = &user_ids[user_activity.sample(g.rng)];
        let length = (1 + geometric(g.rng, 0.18)).min(40).min(options.behaviors - written);
        let session = g.uuid();
        let device = DEVICES[weighted(g.rng, &[60, 30, 8, 2])];
        let mut at = g.time_between(start, until - ChronoDuration::hours(2));
        for _ in 0..length {
            let item = &item_ids[item_popularity.sample(g.rng)];
            let action = ACTIONS[weighted(g.rng, &ACTION_WEIGHTS)];
            let value = match action {
                "view" => format!("{}", g.rng.random_range(1..600)),
                "rating" => format!("{}", g.rng.random_range(1..=5)),
                "buy" | "add_to_cart" => format!("{:.2}", g.lognormal(3.5, 0.9)),
                _ => NULL.to_owned(),
            };
            let source = SOURCES[weighted(g.rng, &[35, 20, 35, 10])];
            let context = format!(
                "{{\"source\":\"{source}\",\"position\":{},\"page\":{}}}",
                g.rng.random_range(0..50),
                g.rng.random_range(1..6)
            );
            copy.row(&[&g.uuid(), user, item, action, &value, &context, &session, device, &timestamp(at)]).await?;
            at += ChronoDuration::seconds(g.rng.random_range(5..180));
            written += 1;
        }
        if written % 4096 < length {
            progress(Progress { phase: Phase::Behaviors, done: written, total: options.behaviors });
        }
    }
    report.behaviors = copy.finish().await?;
    progress(Progress { phase: Phase::Behaviors, done: written, total: options.behaviors });
    laps.lap(Phase::Behaviors, &mut report);

    // Requests and their results.
    let mut requests = Copy::new(
        client,
        "COPY recommendation_requests (id, user_id, scene, context, model_version, variant, latency_ms, num_results, created_at) FROM STDIN",
    )
    .await?;
    // Request ids, users and times, for their results once the requests are in.
    let mut request_meta = Vec::with_capacity(options.requests.min(1 << 24) as usize);
    for n in 0..options.requests {
        let id = g.uuid();
        let user = if g.rng.random_bool(0.9) { user_ids[user_activity.sample(g.rng)].clone() } else { NULL.to_owned() };
        let at = g.time_between(start, until);
        let scene = SCENES[weighted(g.rng, &[50, 20, 20, 10])];
        let latency = (g.lognormal(3.4, 0.5).round() as i64).clamp(2, 5000);
        requests
            .row(&[
                &id,
                &user,
                scene,
                &format!(
                    "{{\"page\":{},\"app_version\":\"5.{}\"}}",
                    g.rng.random_range(1..6),
                    g.rng.random_range(0..9)
                ),
                &format!("gr-v1.{}", g.rng.random_range(0..4)),
                pick(g.rng, &["control", "treatment"]),
                &latency.to_string(),
                "10",
                &timestamp(at),
            ])
            .await?;
        request_meta.push((id, user, at));
        if n % 2048 == 0 {
            progress(Progress { phase: Phase::Requests, done: n, total: options.requests });
        }
    }
    report.requests = requests.finish().await?;
    progress(Progress { phase: Phase::Requests, done: options.requests, total: options.requests });
    laps.lap(Phase::Requests, &mut report);
    let mut results = Copy::new(
        client,
        "COPY recommendation_results (id, request_id, user_id, item_id, position, score, source, clicked, created_at) FROM STDIN",
    )
    .await?;
    let total_results = options.requests * 10;
    for (n, (request, user, at)) in request_meta.iter().enumerate() {
        for position in 0..10u32 {
            let item = &item_ids[item_popularity.sample(g.rng)];
            let score = 1.0 / (1.0 + f64::from(position)) * g.rng.random_range(0.8..1.0);
            let clicked = g.rng.random_bool(0.12 / (1.0 + f64::from(position)));
            let source = pick(g.rng, &["hot", "collaborative", "semantic", "trending"]);
            let id = g.uuid();
            let (position, score) = (position.to_string(), format!("{score:.4}"));
            results
                .row(&[
                    &id,
                    request,
                    user,
                    item,
                    &position,
                    &score,
                    source,
                    if clicked { "t" } else { "f" },
                    &timestamp(*at),
                ])
                .await?;
        }
        if n % 2048 == 0 {
            progress(Progress { phase: Phase::Results, done: n as u64 * 10, total: total_results });
        }
    }
    report.results = results.finish().await?;
    progress(Progress { phase: Phase::Results, done: report.results, total: report.results });
    laps.lap(Phase::Results, &mut report);

    if options.embeddings {
        let total = options.items + options.users;
        let mut copy =
            Copy::new(client, "COPY item_embeddings (item_id, embedding, model_version, embedding_type) FROM STDIN")
                .await?;
        for (n, id) in item_ids.iter().enumerate() {
            copy.row(&[id, &g.vector(), "two-tower-v3", "content"]).await?;
            if n % 1024 == 0 {
                progress(Progress { phase: Phase::Embeddings, done: n as u64, total });
            }
        }
        report.item_embeddings = copy.finish().await?;
        let mut copy = Copy::new(
            client,
            "COPY user_embeddings (user_id, embedding, long_term_embedding, short_term_embedding, behavior_count, model_version) FROM STDIN",
        )
        .await?;
        for (n, id) in user_ids.iter().enumerate() {
            let count = g.rng.random_range(0..500).to_string();
            copy.row(&[id, &g.vector(), &g.vector(), &g.vector(), &count, "two-tower-v3"]).await?;
            if n % 1024 == 0 {
                progress(Progress { phase: Phase::Embeddings, done: options.items + n as u64, total });
            }
        }
        report.user_embeddings = copy.finish().await?;
    }
    laps.lap(Phase::Embeddings, &mut report);

    progress(Progress { phase: Phase::Derived, done: 0, total: 1 });
    client
        .batch_execute("SET LOCAL maintenance_work_mem = '1GB'")
        .await
        .map_err(|e| Error::db("cannot set maintenance_work_mem", e))?;
    for (name, definition) in &indexes {
        client.batch_execute(definition).await.map_err(|e| Error::db(format!("cannot rebuild index {name}"), e))?;
    }
    client.batch_execute(DERIVED).await.map_err(|e| Error::db("cannot derive item_stats and user_profiles", e))?;
    progress(Progress { phase: Phase::Derived, done: 1, total: 1 });
    laps.lap(Phase::Derived, &mut report);
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// The indexes of the data tables that no constraint needs, with their definitions; for a
/// partitioned table, the parent's index (dropping it drops the partitions' copies).
async fn deferrable_indexes(client: &Client) -> Result<Vec<(String, String)>, Error> {
    let rows = client
        .query(
            "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i \
             JOIN pg_class t ON t.oid = i.indrelid \
             WHERE t.relnamespace = 'public'::regnamespace AND NOT t.relispartition AND t.relkind IN ('r', 'p') \
             AND t.relname = ANY (string_to_array(replace($1, ' ', ''), ',')) \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
             ORDER BY 1",
            &[&DATA_TABLES],
        )
        .await
        .map_err(|e| Error::db("cannot list the indexes of the data tables", e))?;
    // The definition of a partitioned table's index says ON ONLY, which would build the parent's
    // index alone; without ONLY, every partition gets its index again.
    Ok(rows.iter().map(|r| (r.get(0), r.get::<_, String>(1).replacen(" ON ONLY ", " ON ", 1))).collect())
}

/// Counters, profiles, statistics and the materialized views, from the loaded rows.
const DERIVED: &str = "
INSERT INTO item_stats (item_id, view_count, click_count, like_count, dislike_count, share_count, purchase_count, rating_count, rating_sum)
SELECT item_id,
       count(*) FILTER (WHERE action = 'view'), count(*) FILTER (WHERE action = 'click'),
       count(*) FILTER (WHERE action = 'like'), count(*) FILTER (WHERE action = 'dislike'),
       count(*) FILTER (WHERE action = 'share'), count(*) FILTER (WHERE action = 'buy'),
       count(*) FILTER (WHERE action = 'rating'), coalesce(sum(value) FILTER (WHERE action = 'rating'), 0)
FROM user_behaviors GROUP BY item_id;
WITH per AS (
    SELECT b.user_id, i.category, count(*) AS n, max(b.created_at) AS last_at
    FROM user_behaviors b JOIN items i ON i.id = b.item_id
    GROUP BY b.user_id, i.category
)
INSERT INTO user_profiles (user_id, preferred_categories, total_actions, last_active_at)
SELECT user_id, (array_agg(category ORDER BY n DESC, category))[1:3], sum(n), max(last_at)
FROM per GROUP BY user_id;
ANALYZE;
SELECT refresh_recommendation_views();
";

const NULL: &str = "\\N";

/// A COPY ... FROM STDIN in text format, sent in chunks of about a megabyte.
struct Copy {
    sink: std::pin::Pin<Box<datastores::tokio_postgres::CopyInSink<Bytes>>>,
    buffer: String,
    statement: &'static str,
}

impl Copy {
    async fn new(client: &Client, statement: &'static str) -> Result<Copy, Error> {
        let sink = client.copy_in(statement).await.map_err(|e| Error::db(statement, e))?;
        Ok(Copy { sink: Box::pin(sink), buffer: String::with_capacity(1 << 21), statement })
    }

    async fn row(&mut self, fields: &[&str]) -> Result<(), Error> {
        push_row(&mut self.buffer, fields);
        if self.buffer.len() >= 1 << 20 {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, String::with_capacity(1 << 21));
        self.sink.send(Bytes::from(chunk.into_bytes())).await.map_err(|e| Error::db(self.statement, e))
    }

    async fn finish(mut self) -> Result<u64, Error> {
        self.flush().await?;
        self.sink.as_mut().finish().await.map_err(|e| Error::db(self.statement, e))
    }
}

/// Appends one row in COPY text format; `\N` passes through as NULL.
fn push_row(buf: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            buf.push('\t');
        }
        if *field == NULL || !field.bytes().any(|b| matches!(b, b'\\' | b'\t' | b'\n' | b'\r')) {
            buf.push_str(field);
            continue;
        }
        for ch in field.chars() {
            match ch {
                '\\' => buf.push_str("\\\\"),
                '\t' => buf.push_str("\\t"),
                '\n' => buf.push_str("\\n"),
                '\r' => buf.push_str("\\r"),
                c => buf.push(c),
            }
        }
    }
    buf.push('\n');
}

/// `2026-01-31 23:59:59.123456+00`, without parsing a format string for every row.
fn timestamp(t: DateTime<Utc>) -> String {
    use chrono::{Datelike, Timelike};
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}+00",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        (t.nanosecond() % 1_000_000_000) / 1000
    )
}

fn months_between(from: DateTime<Utc>, to: DateTime<Utc>) -> u32 {
    use chrono::Datelike;
    let months = (to.year() - from.year()) * 12 + to.month() as i32 - from.month() as i32;
    months.max(0) as u32
}

struct Generator<'a> {
    rng: &'a mut ChaCha8Rng,
}

impl Generator<'_> {
    fn uuid(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
    }

    fn time_between(&mut self, from: DateTime<Utc>, to: DateTime<Utc>) -> DateTime<Utc> {
        let span = (to - from).num_seconds().max(1);
        from + ChronoDuration::seconds(self.rng.random_range(0..span))
    }

    fn normal(&mut self, mean: f64, sd: f64) -> f64 {
        // Box-Muller.
        let u1: f64 = self.rng.random_range(f64::EPSILON..1.0);
        let u2: f64 = self.rng.random();
        mean + sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn lognormal(&mut self, mu: f64, sigma: f64) -> f64 {
        self.normal(mu, sigma).exp()
    }

    /// A unit vector of 256 dimensions in pgvector's text form.
    fn vector(&mut self) -> String {
        let values: Vec<f64> = (0..256).map(|_| self.normal(0.0, 1.0)).collect();
        let norm = values.iter().map(|v| v * v).sum::<f64>().sqrt().max(f64::EPSILON);
        let mut out = String::with_capacity(256 * 9 + 2);
        out.push('[');
        for (i, v) in values.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&format!("{:.5}", v / norm));
        }
        out.push(']');
        out
    }
}

/// Samples ranks 0..n with probability proportional to 1 / (rank + 1)^s.
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize, s: f64) -> Zipf {
        let mut total = 0.0;
        let cumulative = (0..n)
            .map(|rank| {
                total += 1.0 / ((rank + 1) as f64).powf(s);
                total
            })
            .collect();
        Zipf { cumulative }
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(0.0);
        let x = rng.random::<f64>() * total;
        self.cumulative.partition_point(|c| *c < x).min(self.cumulative.len().saturating_sub(1))
    }
}

fn geometric(rng: &mut ChaCha8Rng, p: f64) -> u64 {
    let u: f64 = rng.random_range(f64::EPSILON..1.0);
    (u.ln() / (1.0 - p).ln()).floor() as u64
}

fn weighted(rng: &mut ChaCha8Rng, weights: &[u32]) -> usize {
    let total: u32 = weights.iter().sum();
    let mut x = rng.random_range(0..total);
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    weights.len() - 1
}

fn pick<'a>(rng: &mut ChaCha8Rng, options: &[&'a str]) -> &'a str {
    options[rng.random_range(0..options.len())]
}

const FIRST_NAMES: &[&str] = &[
    "Wei", "Fang", "Li", "Na", "Min", "Jing", "Lei", "Yan", "Hao", "Xin", "Emma", "Liam", "Olivia", "Noah", "Ava",
    "Lucas", "Sofia", "Mateo", "Yuki", "Haruto", "Amara", "Kofi", "Priya", "Arjun", "Lena", "Jonas", "Chloe", "Hugo",
    "Isabel", "Diego",
];
const LAST_NAMES: &[&str] = &[
    "Wang", "Li", "Zhang", "Liu", "Chen", "Yang", "Huang", "Zhao", "Wu", "Zhou", "Smith", "Garcia", "Muller", "Rossi",
    "Silva", "Tanaka", "Kim", "Nguyen", "Patel", "Okafor", "Dubois", "Novak", "Jensen", "Costa", "Ivanova",
];
const COUNTRIES: &[(&str, &[&str])] = &[
    ("CN", &["Beijing", "Shanghai", "Shenzhen", "Hangzhou", "Chengdu"]),
    ("US", &["New York", "San Francisco", "Austin", "Seattle"]),
    ("DE", &["Berlin", "Munich", "Hamburg"]),
    ("JP", &["Tokyo", "Osaka"]),
    ("IN", &["Bengaluru", "Mumbai", "Delhi"]),
    ("BR", &["Sao Paulo", "Rio de Janeiro"]),
    ("FR", &["Paris", "Lyon"]),
    ("GB", &["London", "Manchester"]),
];
const COUNTRY_WEIGHTS: [u32; 8] = [40, 18, 8, 8, 10, 6, 5, 5];
const GENDERS: [&str; 4] = ["male", "female", "other", "unknown"];
const USER_STATUS: [&str; 4] = ["active", "inactive", "banned", "deleted"];
const ITEM_STATUS: [&str; 3] = ["active", "inactive", "deleted"];
const ITEM_TYPES: [(&str, &[&str]); 4] = [
    ("movie", &["action", "comedy", "drama", "documentary", "animation", "thriller"]),
    ("product", &["electronics", "books", "home", "fashion", "sports", "beauty"]),
    ("article", &["tech", "finance", "health", "travel", "food", "science"]),
    ("video", &["music", "gaming", "education", "vlog", "news", "comedy"]),
];
const ADJECTIVES: &[&str] = &[
    "Silent", "Golden", "Quantum", "Hidden", "Bright", "Wild", "Urban", "Ancient", "Smart", "Little", "Endless",
    "Crimson", "Swift", "Gentle", "Bold",
];
const NOUNS: &[&str] = &[
    "River", "Garden", "Engine", "Journey", "Kitchen", "Planet", "Market", "Library", "Signal", "Harbor", "Mountain",
    "Studio", "Circuit", "Voyage", "Theory",
];
const TAGS: &[&str] = &[
    "new",
    "bestseller",
    "trending",
    "classic",
    "family",
    "4k",
    "budget",
    "premium",
    "eco",
    "gift",
    "howto",
    "review",
    "live",
    "short",
    "award",
];
const BRANDS: &[&str] = &["Acme", "Nimbus", "Orbit", "Lumen", "Kestrel", "Maple"];
const DEVICES: [&str; 4] = ["mobile", "desktop", "tablet", "tv"];
const SOURCES: [&str; 4] = ["home", "search", "recommend", "detail"];
const SCENES: [&str; 4] = ["home_feed", "item_detail", "search", "cart"];
const ACTIONS: [&str; 9] = ["view", "click", "like", "dislike", "buy", "share", "rating", "add_to_cart", "skip"];
/// Funnel ratios in thousandths: views dominate, purchases are rare.
const ACTION_WEIGHTS: [u32; 9] = [550, 220, 70, 15, 25, 20, 30, 45, 25];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_match_chronos_formatting() {
        for text in ["2026-01-31T23:59:59.123456Z", "1999-12-31T00:00:00Z", "2024-02-29T12:03:04.000007Z"] {
            let t: DateTime<Utc> = text.parse().unwrap();
            assert_eq!(timestamp(t), t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string());
        }
    }

    #[test]
    fn copy_rows_escape_only_what_needs_it() {
        let mut buf = String::new();
        push_row(&mut buf, &["plain", "tab\there", "back\\slash", NULL, "line\nbreak"]);
        assert_eq!(buf, "plain\ttab\\there\tback\\\\slash\t\\N\tline\\nbreak\n");
    }

    #[test]
    fn copy_text_escaping() {
        let mut buf = String::new();
        push_row(&mut buf, &["a\tb", "back\\slash", NULL, "line\nbreak"]);
        assert_eq!(buf, "a\\tb\tback\\\\slash\t\\N\tline\\nbreak\n");
    }

    #[test]
    fn zipf_favours_the_head() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let zipf = Zipf::new(1000, 1.07);
        let mut hits = [0u32; 1000];
        for _ in 0..100_000 {
            hits[zipf.sample(&mut rng)] += 1;
        }
        let head: u32 = hits[..10].iter().sum();
        let tail: u32 = hits[500..].iter().sum();
        assert!(head > tail, "the 10 most popular items beat the 500 least popular: {head} vs {tail}");
        assert!(hits.iter().filter(|h| **h > 0).count() > 900, "the tail still gets some");
    }

    #[test]
    fn validation_names_the_flag() {
        let options = SeedOptions {
            users: 1,
            items: 1,
            behaviors: MAX_ROWS + 1,
            requests: 0,
            months: 3,
            seed: 1,
            until: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            embeddings: false,
            clean: false,
        };
        assert!(options.validate().unwrap_err().to_string().contains("--behaviors"));
        let options = SeedOptions { behaviors: 10, users: 0, ..options };
        assert!(options.validate().unwrap_err().to_string().contains("--users"));
    }
}
