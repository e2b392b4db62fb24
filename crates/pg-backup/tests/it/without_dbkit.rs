//! The README's "Restoring without dbkit" commands, run exactly as written, restore real
//! backups of every format with standard tools alone.

use std::path::Path;

use pg_backup::{Compression, Format};
use testkit::TestDatabase;

use crate::{fingerprint, interesting_database, options};

/// The README's fenced block that starts with `# restore: <format>`.
fn readme_block(format: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md")).unwrap();
    let marker = format!("```sh\n# restore: {format}");
    let start = readme.find(&marker).unwrap_or_else(|| panic!("the README has no block for {format}")) + 6;
    let end = readme[start..].find("```").unwrap() + start;
    readme[start..end].to_owned()
}

fn run_block(
    block: &str,
    backup: &Path,
    manifest: &Path,
    target: &str,
    pg: &datastores::PostgresConfig,
) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let passfile = dir.path().join("pgpass");
    let password = pg.password.as_ref().map(|p| p.expose().to_owned()).unwrap_or_default();
    std::fs::write(&passfile, format!("*:*:*:{}:{password}\n", pg.user)).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let bin = crate::tools().bin_dir.expect("PG_BIN_DIR");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    std::process::Command::new("bash")
        .args(["-e", "-o", "pipefail", "-c", block])
        .env("PATH", path)
        .env("BACKUP", backup)
        .env("MANIFEST", manifest)
        .env("TARGET", target)
        .env("PGHOST", &pg.host)
        .env("PGPORT", pg.port.to_string())
        .env("PGUSER", &pg.user)
        .env("PGPASSFILE", &passfile)
        .env("PGDATABASE", "postgres")
        .env_remove("PGPASSWORD")
        .output()
        .unwrap()
}

#[tokio::test]
async fn the_documented_commands_restore_every_format() {
    let source = interesting_database().await;
    let expected = fingerprint(&source.config).await;
    for (label, format, compression) in [
        ("custom", Format::Custom, Compression::Zstd(3)),
        ("plain", Format::Plain, Compression::Gzip(6)),
        ("directory", Format::Directory, Compression::Gzip(6)),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut opts = options(Some(dir.path().into()), None);
        opts.format = format;
        opts.compression = compression;
        let manifest = pg_backup::backup(&source.config, &opts, &mut |_| {}).await.unwrap();
        let folder = dir.path().join("daily");
        let (backup, manifest_path) = (folder.join(&manifest.artifact), folder.join(manifest.manifest_name()));
        let target = TestDatabase::adopt(&testkit::unique_name("plain_tools"));
        let output = run_block(&readme_block(label), &backup, &manifest_path, &target.name, &source.config);
        assert!(
            output.status.success(),
            "{label}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(fingerprint(&target.config).await, expected, "{label}: the same contents");

        // A damaged file is caught by the documented checksum step before anything is restored.
        let victim = if format == Format::Directory {
            let name = &manifest.files.iter().max_by_key(|f| f.bytes).unwrap().name;
            backup.join(name)
        } else {
            backup.clone()
        };
        let mut bytes = std::fs::read(&victim).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x40;
        std::fs::write(&victim, &bytes).unwrap();
        let other = TestDatabase::adopt(&testkit::unique_name("plain_tools"));
        let output = run_block(&readme_block(label), &backup, &manifest_path, &other.name, &source.config);
        assert!(!output.status.success(), "{label}: a damaged backup is refused");
        assert!(String::from_utf8_lossy(&output.stderr).contains("checksum mismatch"), "{label}");
        let exists: bool = source
            .connect()
            .await
            .query_one("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", &[&other.name])
            .await
            .unwrap()
            .get(0);
        assert!(!exists, "{label}: nothing was created");
    }
}
