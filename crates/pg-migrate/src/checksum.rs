//! Flyway's checksum and lock key.

/// Flyway's checksum of a SQL script: the CRC-32 of its UTF-8 text with a leading byte-order mark
/// and every line terminator (`\n`, `\r`) removed, as a signed 32-bit integer. Flyway reads the
/// script line by line and feeds each line without its terminator to one CRC-32, which is the
/// same thing.
pub fn flyway_checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut hasher = crc32fast::Hasher::new();
    for piece in text.split(['\n', '\r']) {
        hasher.update(piece.as_bytes());
    }
    hasher.finalize() as i32
}

/// Java's `String.hashCode` (over UTF-16 code units, wrapping), which Flyway uses to derive its
/// advisory lock key from the history table's name.
pub fn java_string_hash(text: &str) -> i32 {
    text.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The advisory lock key Flyway takes for `"schema"."table"`, so that pg-migrate and Flyway
/// running against the same database exclude each other.
pub fn flyway_lock_key(schema: &str, table: &str) -> i64 {
    const MAGIC: i64 = 77_431_708_279_161;
    let name = format!("{}.{}", crate::sql::quote_ident(schema), crate::sql::quote_ident(table));
    MAGIC + i64::from(java_string_hash(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Golden values: CRC-32 (as Java's `java.util.zip.CRC32`, cast to int) of the text with line
    /// terminators and a leading BOM removed, computed independently with Python's zlib.crc32.
    #[test]
    fn golden_checksums() {
        let cases: &[(&str, i32)] = &[
            ("", 0),
            ("SELECT 1;", 78_787_420),
            ("SELECT 1;\n", 78_787_420),
            ("CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n", 169_406_234),
        ];
        for (text, expected) in cases {
            assert_eq!(flyway_checksum(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn line_endings_bom_and_blank_lines() {
        let lf = "CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n";
        let crlf = "CREATE TABLE t (id int);\r\nINSERT INTO t VALUES (1);\r\n";
        let cr = "CREATE TABLE t (id int);\rINSERT INTO t VALUES (1);\r";
        let bom = "\u{feff}CREATE TABLE t (id int);\nINSERT INTO t VALUES (1);\n";
        let blank = "\n\nCREATE TABLE t (id int);\n\n\nINSERT INTO t VALUES (1);\n\n";
        let expected = flyway_checksum(lf);
        for text in [crlf, cr, bom, blank] {
            assert_eq!(flyway_checksum(text), expected, "{text:?}");
        }
        // A BOM anywhere but the start counts; so does any other change.
        assert_ne!(flyway_checksum("CREATE TABLE t (id int);\n\u{feff}INSERT INTO t VALUES (1);\n"), expected);
        assert_ne!(flyway_checksum("create table t (id int);\nINSERT INTO t VALUES (1);\n"), expected);
    }

    #[test]
    fn non_ascii_text_is_hashed_as_utf8() {
        // 用户表 ("users table"), golden from zlib.crc32("-- 用户表\nCREATE TABLE 用户 (名字 text);".replace("\n","").encode()).
        assert_eq!(flyway_checksum("-- 用户表\nCREATE TABLE 用户 (名字 text);\n"), -679_102_233);
    }

    #[test]
    fn java_hash_and_lock_key() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("hello"), 99_162_322);
        // Wraps like Java's int arithmetic.
        assert_eq!(java_string_hash("\"public\".\"flyway_schema_history\""), 2_125_624_436);
        assert_eq!(
            flyway_lock_key("public", "flyway_schema_history"),
            77_431_708_279_161 + i64::from(java_hash_reference("\"public\".\"flyway_schema_history\""))
        );
    }

    fn java_hash_reference(s: &str) -> i32 {
        let mut h: i64 = 0;
        for unit in s.encode_utf16() {
            h = (h * 31 + i64::from(unit)) & 0xffff_ffff;
        }
        h as u32 as i32
    }
}
