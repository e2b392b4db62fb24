//! Flyway's schema history table: same columns, types, constraint and index names, so a database
//! migrated by Flyway can be taken over by pg-migrate and the other way round.

use chrono::NaiveDateTime;
use datastores::tokio_postgres::types::Type;
use datastores::tokio_postgres::{Client, GenericClient, Row};

use crate::error::MigrateError;
use crate::sql::{quote_ident, quote_literal};

/// `type` values Flyway writes.
pub const TYPE_SQL: &str = "SQL";
pub const TYPE_BASELINE: &str = "BASELINE";
pub const TYPE_SCHEMA: &str = "SCHEMA";

/// Where the history table lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Table {
    /// The schema holding it (`MigrateConfig::default_schema`).
    pub schema: String,
    /// The table's name, unquoted (`flyway_schema_history` by default).
    pub name: String,
}

impl Table {
    /// The quoted name for SQL: `"schema"."name"`.
    pub fn qualified(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }

    /// Flyway's DDL for PostgreSQL.
    pub fn create_sql(&self) -> String {
        let t = self.qualified();
        format!(
            "CREATE TABLE {t} (\n    \"installed_rank\" INT NOT NULL,\n    \"version\" VARCHAR(50),\n    \
             \"description\" VARCHAR(200) NOT NULL,\n    \"type\" VARCHAR(20) NOT NULL,\n    \
             \"script\" VARCHAR(1000) NOT NULL,\n    \"checksum\" INTEGER,\n    \
             \"installed_by\" VARCHAR(100) NOT NULL,\n    \"installed_on\" TIMESTAMP NOT NULL DEFAULT now(),\n    \
             \"execution_time\" INTEGER NOT NULL,\n    \"success\" BOOLEAN NOT NULL\n);\n\
             ALTER TABLE {t} ADD CONSTRAINT {} PRIMARY KEY (\"installed_rank\");\n\
             CREATE INDEX {} ON {t} (\"success\");",
            quote_ident(&format!("{}_pk", self.name)),
            quote_ident(&format!("{}_s_idx", self.name)),
        )
    }
}

/// One row of the history table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Applied {
    /// The row's position in the history (the primary key): 1 for the first migration, 0 for
    /// the marker of schemas the migrator created.
    pub installed_rank: i32,
    /// The version as written (`1.2`); `None` for repeatable migrations and the schema marker.
    pub version: Option<String>,
    /// The migration's description (the baseline's, for a baseline row).
    pub description: String,
    /// Flyway's `type`: `SQL` for a migration, `BASELINE`, or `SCHEMA` for the marker of
    /// schemas the migrator created.
    #[serde(rename = "type")]
    pub kind: String,
    /// The script's path relative to its location; the quoted schema names for a `SCHEMA` row.
    pub script: String,
    /// Flyway's checksum of the script; `None` for baseline and schema rows.
    pub checksum: Option<i32>,
    /// Who applied it: `installedBy`, else the connected user.
    pub installed_by: String,
    /// When it was applied, by the server's clock (a `timestamp` without time zone).
    pub installed_on: NaiveDateTime,
    /// Milliseconds.
    pub execution_time: i32,
    /// Whether it succeeded; a failed row stops `migrate` until `repair` removes it.
    pub success: bool,
}

impl Applied {
    /// A row of the history table; an error naming the column when the table does not have
    /// Flyway's shape (another tool's table of the same name, a column of another type, NULLs).
    fn from_row(row: &Row, table: &Table) -> Result<Applied, MigrateError> {
        fn get<'a, T: datastores::tokio_postgres::types::FromSql<'a>>(
            row: &'a Row,
            index: usize,
            table: &Table,
        ) -> Result<T, MigrateError> {
            row.try_get(index).map_err(|e| {
                MigrateError::Unexpected(format!(
                    "{} does not have the shape of Flyway's history table (column {}): {e}",
                    table.qualified(),
                    row.columns().get(index).map(|c| c.name()).unwrap_or("?")
                ))
            })
        }
        Ok(Applied {
            installed_rank: get(row, 0, table)?,
            version: get(row, 1, table)?,
            description: get(row, 2, table)?,
            kind: get(row, 3, table)?,
            script: get(row, 4, table)?,
            checksum: get(row, 5, table)?,
            installed_by: get(row, 6, table)?,
            installed_on: get(row, 7, table)?,
            execution_time: get(row, 8, table)?,
            success: get(row, 9, table)?,
        })
    }
}

/// A row to write; the rank is the next free one, `installed_on` the server's clock.
#[derive(Clone, Debug)]
pub struct NewRow<'a> {
    pub version: Option<&'a str>,
    pub description: &'a str,
    pub kind: &'a str,
    pub script: &'a str,
    pub checksum: Option<i32>,
    pub installed_by: &'a str,
    pub execution_time: i32,
    pub success: bool,
}

impl NewRow<'_> {
    /// The INSERT as text, for `--dry-run`.
    pub fn insert_sql(&self, table: &Table) -> String {
        self.insert_sql_with(table, &self.execution_time.to_string())
    }

    /// The INSERT as text, its execution time measured by the server from the start of the
    /// transaction, so that it can travel in the same message as the migration.
    pub fn insert_sql_timed(&self, table: &Table) -> String {
        self.insert_sql_with(table, "(extract(epoch FROM clock_timestamp() - now()) * 1000)::integer")
    }

    fn insert_sql_with(&self, table: &Table, execution_time: &str) -> String {
        let opt = |v: Option<&str>| v.map(quote_literal).unwrap_or_else(|| "NULL".into());
        format!(
            "INSERT INTO {t} (\"installed_rank\", \"version\", \"description\", \"type\", \"script\", \"checksum\", \
             \"installed_by\", \"execution_time\", \"success\")\nSELECT coalesce(max(\"installed_rank\"), 0) + 1, {}, {}, {}, {}, {}, {}, {}, {} FROM {t};",
            opt(self.version),
            quote_literal(self.description),
            quote_literal(self.kind),
            quote_literal(self.script),
            self.checksum.map(|c| c.to_string()).unwrap_or_else(|| "NULL".into()),
            quote_literal(self.installed_by),
            execution_time,
            self.success,
            t = table.qualified()
        )
    }
}

pub async fn exists(client: &impl GenericClient, table: &Table) -> Result<bool, MigrateError> {
    let row = client
        .query_typed_one("SELECT to_regclass($1) IS NOT NULL", &[(&table.qualified(), Type::TEXT)])
        .await
        .map_err(|e| MigrateError::db(format!("cannot look for the history table {}", table.qualified()), e))?;
    Ok(row.get(0))
}

pub async fn create(client: &impl GenericClient, table: &Table) -> Result<(), MigrateError> {
    client
        .batch_execute(&table.create_sql())
        .await
        .map_err(|e| MigrateError::db(format!("cannot create the history table {}", table.qualified()), e))
}

/// Every row, in `installed_rank` order; none when the table does not exist.
pub async fn read(client: &impl GenericClient, table: &Table) -> Result<Vec<Applied>, MigrateError> {
    if !exists(client, table).await? {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT installed_rank, version, description, type, script, checksum, installed_by, installed_on, \
         execution_time, success FROM {} ORDER BY installed_rank",
        table.qualified()
    );
    let rows = client
        .query_typed(&sql, &[])
        .await
        .map_err(|e| MigrateError::db(format!("cannot read the history table {}", table.qualified()), e))?;
    rows.iter().map(|r| Applied::from_row(r, table)).collect()
}

pub async fn insert(client: &impl GenericClient, table: &Table, row: &NewRow<'_>) -> Result<(), MigrateError> {
    let sql = format!(
        "INSERT INTO {t} (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) \
         SELECT coalesce(max(installed_rank), 0) + 1, $1, $2, $3, $4, $5, $6, $7, $8 FROM {t}",
        t = table.qualified()
    );
    client
        .query_typed(
            &sql,
            &[
                (&row.version, Type::VARCHAR),
                (&row.description, Type::VARCHAR),
                (&row.kind, Type::VARCHAR),
                (&row.script, Type::VARCHAR),
                (&row.checksum, Type::INT4),
                (&row.installed_by, Type::VARCHAR),
                (&row.execution_time, Type::INT4),
                (&row.success, Type::BOOL),
            ],
        )
        .await
        .map_err(|e| MigrateError::db(format!("cannot record {} in {}", row.script, table.qualified()), e))?;
    Ok(())
}

/// Flyway's marker for schemas it created: rank 0, type SCHEMA, the quoted schema names.
pub async fn insert_schema_marker(
    client: &Client,
    table: &Table,
    schemas: &[String],
    user: &str,
) -> Result<(), MigrateError> {
    let names = schemas.iter().map(|s| quote_ident(s)).collect::<Vec<_>>().join(",");
    let sql = format!(
        "INSERT INTO {} (installed_rank, version, description, type, script, checksum, installed_by, execution_time, success) \
         VALUES (0, NULL, '<< Flyway Schema Creation >>', $1, $2, NULL, $3, 0, true)",
        table.qualified()
    );
    client
        .query_typed(&sql, &[(&TYPE_SCHEMA, Type::VARCHAR), (&names, Type::VARCHAR), (&user, Type::VARCHAR)])
        .await
        .map_err(|e| MigrateError::db("cannot record the created schemas", e))?;
    Ok(())
}

pub async fn delete_failed(client: &impl GenericClient, table: &Table) -> Result<u64, MigrateError> {
    let sql = format!("DELETE FROM {} WHERE NOT success", table.qualified());
    let sql = format!("WITH gone AS ({sql} RETURNING 1) SELECT count(*) FROM gone");
    let row =
        client.query_typed_one(&sql, &[]).await.map_err(|e| MigrateError::db("cannot remove failed migrations", e))?;
    Ok(row.get::<_, i64>(0) as u64)
}

pub async fn realign(
    client: &impl GenericClient,
    table: &Table,
    rank: i32,
    description: &str,
    kind: &str,
    checksum: i32,
) -> Result<(), MigrateError> {
    let sql = format!(
        "UPDATE {} SET description = $2, type = $3, checksum = $4 WHERE installed_rank = $1",
        table.qualified()
    );
    client
        .query_typed(
            &sql,
            &[(&rank, Type::INT4), (&description, Type::VARCHAR), (&kind, Type::VARCHAR), (&checksum, Type::INT4)],
        )
        .await
        .map_err(|e| MigrateError::db("cannot update the history table", e))?;
    Ok(())
}
