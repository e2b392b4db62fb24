//! The proc-macro behind `pg_migrate::embed_migrations!`, which compiles a folder of migration
//! scripts into a program. Use that macro, not this crate: it wraps the list of files made here
//! in a `pg_migrate::Embedded`, whose `scripts()` checks and orders them as pg-migrate reads a
//! folder from disk.
//!
//! It has no dependencies, so that it builds in a moment. The folder is read while the crate that
//! uses the macro compiles (relative to its `CARGO_MANIFEST_DIR`); each file is embedded with
//! `include_str!`, so editing one rebuilds that crate. Cargo does not notice a file added to the
//! folder, though: a `build.rs` with `println!("cargo:rerun-if-changed=migrations")` makes it.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};

use proc_macro::{Delimiter, Group, Ident, Literal, Punct, Spacing, Span, TokenStream, TokenTree};

/// `embedded_files!("migrations")`: a `&'static [(&'static str, &'static str)]` holding every
/// file of the folder (relative to the `Cargo.toml` of the crate being built) that pg-migrate
/// reads, as its path relative to the folder (`/`-separated) and its text, sorted by path. Other
/// files are left out, as pg-migrate skips them on disk.
#[proc_macro]
pub fn embedded_files(input: TokenStream) -> TokenStream {
    let (folder, span) = match folder_argument(input) {
        Ok(found) => found,
        Err((message, span)) => return compile_error(&message, span),
    };
    let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR") else {
        return compile_error("CARGO_MANIFEST_DIR is not set: build with cargo", span);
    };
    let files = match migration_files(&PathBuf::from(manifest_dir).join(folder)) {
        Ok(files) => files,
        Err(message) => return compile_error(&message, span),
    };
    let mut code = String::from("&[");
    for (name, path) in &files {
        code.push_str(&format!("({}, ::core::include_str!({})),", Literal::string(name), Literal::string(path)));
    }
    code.push(']');
    match code.parse() {
        Ok(tokens) => tokens,
        Err(e) => compile_error(&format!("cannot embed the migrations: {e}"), span),
    }
}

const USAGE: &str =
    "expected the migrations folder as a string literal, relative to Cargo.toml: embed_migrations!(\"migrations\")";

/// The folder named by the macro's only argument, a string literal (a trailing comma allowed).
fn folder_argument(input: TokenStream) -> Result<(String, Span), (String, Span)> {
    let tokens = flatten(input);
    let literal = match tokens.as_slice() {
        [TokenTree::Literal(literal)] => literal,
        [TokenTree::Literal(literal), TokenTree::Punct(comma)] if comma.as_char() == ',' => literal,
        [] => return Err((USAGE.to_owned(), Span::call_site())),
        [first, ..] => return Err((USAGE.to_owned(), first.span())),
    };
    let span = literal.span();
    let folder = unquote(&literal.to_string()).map_err(|reason| (reason, span))?;
    Ok((folder, span))
}

/// The tokens with invisible groups (a `macro_rules!` fragment passed on) opened.
fn flatten(input: TokenStream) -> Vec<TokenTree> {
    let mut out = Vec::new();
    for token in input {
        match token {
            TokenTree::Group(group) if group.delimiter() == Delimiter::None => out.extend(flatten(group.stream())),
            other => out.push(other),
        }
    }
    out
}

/// The text of a string literal as written in source: `"..."` with simple escapes, or `r#"..."#`.
fn unquote(literal: &str) -> Result<String, String> {
    if let Some(raw) = literal.strip_prefix('r') {
        let hashes = raw.len() - raw.trim_start_matches('#').len();
        let fence = "#".repeat(hashes);
        return raw[hashes..]
            .strip_suffix(fence.as_str())
            .and_then(|quoted| quoted.strip_prefix('"'))
            .and_then(|quoted| quoted.strip_suffix('"'))
            .map(str::to_owned)
            .ok_or_else(|| USAGE.to_owned());
    }
    let body = literal.strip_prefix('"').and_then(|l| l.strip_suffix('"')).ok_or_else(|| USAGE.to_owned())?;
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            Some('\'') => out.push('\''),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('0') => out.push('\0'),
            other => {
                let escape = other.map(String::from).unwrap_or_default();
                return Err(format!(
                    "the escape \\{escape} is not supported in the folder name; write it as a raw string r\"...\""
                ));
            }
        }
    }
    Ok(out)
}

/// Whether pg-migrate reads a file of this name as a script: `V...`, `R_...`, `beforeMigrate...`
/// and `afterMigrate...` ending in `.sql`. A name that only looks like one (`V1_init.sql`) is
/// kept too, so that `Embedded::scripts` reports it as reading the folder would.
fn is_script(file_name: &str) -> bool {
    file_name.ends_with(".sql")
        && ["V", "R_", "beforeMigrate", "afterMigrate"].iter().any(|prefix| file_name.starts_with(prefix))
}

/// Every script under `root` (recursively) and each script's `<script>.conf`, as
/// (`/`-separated path relative to `root`, absolute path), sorted by path as pg-migrate sorts.
fn migration_files(root: &Path) -> Result<Vec<(String, String)>, String> {
    if !root.is_dir() {
        return Err(format!("{}: the migrations folder is not a folder (or does not exist)", root.display()));
    }
    let mut paths = Vec::new();
    walk(root, &mut paths).map_err(|e| format!("{}: cannot list: {e}", root.display()))?;
    paths.sort();
    let scripts: Vec<&PathBuf> =
        paths.iter().filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(is_script)).collect();
    let mut files = Vec::new();
    for path in &paths {
        let is_conf = || {
            let name = path.to_str()?.strip_suffix(".conf")?;
            Some(scripts.iter().any(|s| s.to_str() == Some(name)))
        };
        if !scripts.contains(&path) && is_conf() != Some(true) {
            continue;
        }
        let relative = path.strip_prefix(root).unwrap_or(path);
        let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        let absolute = path.to_str().ok_or_else(|| format!("{}: the path is not valid UTF-8", path.display()))?;
        files.push((name, absolute.to_owned()));
    }
    Ok(files)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

/// `compile_error!(message)`, pointing at `span`.
fn compile_error(message: &str, span: Span) -> TokenStream {
    let mut text = Literal::string(message);
    text.set_span(span);
    let mut group = Group::new(Delimiter::Parenthesis, TokenTree::Literal(text).into());
    group.set_span(span);
    let mut bang = Punct::new('!', Spacing::Alone);
    bang.set_span(span);
    [TokenTree::Ident(Ident::new("compile_error", span)), TokenTree::Punct(bang), TokenTree::Group(group)]
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn string_literals() {
        assert_eq!(unquote("\"migrations\"").unwrap(), "migrations");
        assert_eq!(unquote("\"../../db \\\"x\\\"\\\\y\"").unwrap(), "../../db \"x\"\\y");
        assert_eq!(unquote("r\"C:\\sql\"").unwrap(), "C:\\sql");
        assert_eq!(unquote("r#\"a\"b\"#").unwrap(), "a\"b");
        assert!(unquote("\"\\u{41}\"").unwrap_err().contains("raw string"));
        assert!(unquote("42").is_err());
        assert!(unquote("b\"x\"").is_err());
    }

    #[test]
    fn script_names() {
        for name in
            ["V1__a.sql", "V1_init.sql", "R__views.sql", "R_views.sql", "afterMigrate.sql", "beforeMigrate__x.sql"]
        {
            assert!(is_script(name), "{name}");
        }
        for name in ["flyway.conf", "README.md", "notes.sql", "V1__a.sql.conf", "V1__a.SQL", ".V1__a.sql"] {
            assert!(!is_script(name), "{name}");
        }
    }

    #[test]
    fn lists_scripts_and_their_conf_sorted() {
        let dir = std::env::temp_dir().join(format!("pg-migrate-macros-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for name in [
            "V2__b.sql",
            "V2__b.sql.conf",
            "V1__a.sql",
            "orphan.sql.conf",
            "flyway.conf",
            "notes.txt",
            "afterMigrate.sql",
            "sub/R__v.sql",
        ] {
            std::fs::write(dir.join(name), "SELECT 1;").unwrap();
        }
        let files = migration_files(&dir).unwrap();
        let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["V1__a.sql", "V2__b.sql", "V2__b.sql.conf", "afterMigrate.sql", "sub/R__v.sql"]);
        assert!(files.iter().all(|(name, path)| Path::new(path).is_absolute() && path.ends_with(name)));
        let missing = migration_files(&dir.join("nope")).unwrap_err();
        assert!(missing.contains("nope") && missing.contains("not a folder"), "{missing}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
