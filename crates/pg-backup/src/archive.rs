//! Reading what a dump holds while it streams by: for every table, its rows and an
//! order-independent hash of them, taken from pg_dump's own output (custom, directory or plain
//! format). The counts are exact and cost no second read of the database: they come from the
//! dump's snapshot, as the restore will see them.
//!
//! pg_dump writes table data as `COPY ... FROM stdin` text, one row per line (newlines inside
//! values are escaped as `\n`), so a table's rows are the lines of its data. The content hash is
//! the sum, modulo 2^128, of the XXH3-128 hash of every line: the same rows in any order give the
//! same sum, so `verify --checksums` recomputes it from `COPY ... TO STDOUT` of the restored table
//! (with pg_dump's session settings) and compares, whatever the table's size.
//!
//! The archive layout is pg_dump's (`pg_backup_archiver.c`, `pg_backup_custom.c`,
//! `pg_backup_directory.c`), versions 1.12 (PostgreSQL 9.0) to 1.16 (PostgreSQL 17 and 18).

use std::collections::BTreeMap;
use std::io::{self, Read};

use xxhash_rust::xxh3::xxh3_128;

/// Rows and content hash of a stream of COPY text: one row per line, up to the `\.` line that
/// ends COPY data in a dump. The same rows in any order give the same hash.
///
/// ```rust
/// use pg_backup::RowHash;
///
/// let mut dumped = RowHash::default();
/// dumped.feed(b"1\tapple\n2\tpe"); // Lines may be split anywhere.
/// dumped.feed(b"ar\n\\.\n\n");
/// let mut restored = RowHash::default();
/// restored.feed(b"2\tpear\n1\tapple\n");
/// let (rows, hash) = dumped.finish();
/// assert_eq!(rows, 2);
/// assert_eq!(hash.len(), 32);
/// assert_eq!(restored.finish(), (2, hash));
/// ```
#[derive(Clone, Debug, Default)]
pub struct RowHash {
    /// Rows counted so far.
    pub rows: i64,
    sum: u128,
    partial: Vec<u8>,
    /// Past the `\.` line that ends COPY data in a dump (pg_dump writes it, and blank lines
    /// after it, into the archive). No row is ever that line: COPY escapes a backslash.
    ended: bool,
}

impl RowHash {
    /// Feeds COPY text; lines may be split anywhere between calls.
    pub fn feed(&mut self, mut data: &[u8]) {
        while let Some(end) = memchr::memchr(b'\n', data) {
            let line = &data[..end];
            if self.partial.is_empty() {
                self.add(line);
            } else {
                let mut joined = std::mem::take(&mut self.partial);
                joined.extend_from_slice(line);
                self.add(&joined);
                joined.clear();
                self.partial = joined;
            }
            data = &data[end + 1..];
        }
        self.partial.extend_from_slice(data);
    }

    fn add(&mut self, line: &[u8]) {
        if self.ended || line == b"\\." {
            self.ended = true;
            return;
        }
        self.rows += 1;
        self.sum = self.sum.wrapping_add(xxh3_128(line));
    }

    /// The hash as 32 hex digits. A last line without its newline counts too.
    pub fn finish(mut self) -> (i64, String) {
        if !self.partial.is_empty() {
            let line = std::mem::take(&mut self.partial);
            self.add(&line);
        }
        (self.rows, format!("{:032x}", self.sum))
    }
}

/// A table's data as the dump holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableData {
    /// The table's schema.
    pub schema: String,
    /// The table's name, unquoted.
    pub name: String,
    /// The column list of pg_dump's COPY statement, as written there (`id, "Name", payload`).
    pub columns: Option<String>,
    /// Its rows in the dump.
    pub rows: i64,
    /// The [`RowHash`] of its rows, 32 hex digits.
    pub content_hash: String,
}

/// One TOC entry, as far as data goes.
#[derive(Clone, Debug)]
struct Entry {
    desc: String,
    namespace: String,
    tag: String,
    copy_stmt: Option<String>,
    /// The directory format's data file name (`1234.dat`).
    file: Option<String>,
}

/// The layout details that vary between archive versions.
struct Head {
    version: (u8, u8, u8),
    int_size: usize,
    off_size: usize,
    format: u8,
}

const FORMAT_CUSTOM: u8 = 1;
/// The directory format's `toc.dat` says 3 (pg_dump 15 to 18 write it so; 5 is accepted too).
const FORMAT_DIRECTORY: [u8; 2] = [3, 5];
const BLK_DATA: u8 = 1;
const BLK_BLOBS: u8 = 3;

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

struct Reader<R> {
    inner: R,
    int_size: usize,
}

impl<R: Read> Reader<R> {
    fn byte(&mut self) -> io::Result<u8> {
        let mut b = [0u8; 1];
        self.inner.read_exact(&mut b)?;
        Ok(b[0])
    }

    /// A byte, or `None` at the end of the stream.
    fn byte_or_end(&mut self) -> io::Result<Option<u8>> {
        let mut b = [0u8; 1];
        loop {
            return match self.inner.read(&mut b) {
                Ok(0) => Ok(None),
                Ok(_) => Ok(Some(b[0])),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// pg_dump's `WriteInt`: a sign byte, then `int_size` bytes, least significant first.
    fn int(&mut self) -> io::Result<i64> {
        let negative = self.byte()? != 0;
        let mut value: i64 = 0;
        for i in 0..self.int_size {
            let b = i64::from(self.byte()?);
            if i < 8 {
                value |= b << (8 * i);
            }
        }
        Ok(if negative { -value } else { value })
    }

    /// pg_dump's `WriteStr`: a length (-1 for NULL), then the bytes.
    fn string(&mut self) -> io::Result<Option<String>> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        if len > 1 << 30 {
            return Err(invalid(format!("a string of {len} bytes in the archive's table of contents")));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner.read_exact(&mut buf)?;
        Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
    }

    fn skip(&mut self, n: usize) -> io::Result<()> {
        let copied = io::copy(&mut (&mut self.inner).take(n as u64), &mut io::sink())?;
        if copied as usize != n { Err(io::ErrorKind::UnexpectedEof.into()) } else { Ok(()) }
    }
}

fn at_least(version: (u8, u8, u8), minor: u8) -> bool {
    version.0 > 1 || (version.0 == 1 && version.1 >= minor)
}

/// Reads the header (after the magic) and the table of contents.
fn read_toc<R: Read>(reader: &mut Reader<R>) -> io::Result<(Head, Vec<(i64, Entry)>)> {
    let mut magic = [0u8; 5];
    reader.inner.read_exact(&mut magic)?;
    if &magic != b"PGDMP" {
        return Err(invalid("not a pg_dump archive (no PGDMP header)"));
    }
    let (major, minor) = (reader.byte()?, reader.byte()?);
    let rev = if major > 1 || (major == 1 && minor > 0) { reader.byte()? } else { 0 };
    let version = (major, minor, rev);
    if !at_least(version, 12) || (major, minor) > (1, 16) {
        return Err(invalid(format!("archive version {major}.{minor} is not supported (1.12 to 1.16 are)")));
    }
    reader.int_size = usize::from(reader.byte()?);
    if reader.int_size == 0 || reader.int_size > 16 {
        return Err(invalid(format!("archive integer size {} is implausible", reader.int_size)));
    }
    let off_size = usize::from(reader.byte()?);
    let format = reader.byte()?;
    if at_least(version, 15) {
        let algorithm = reader.byte()?;
        if format == FORMAT_CUSTOM && algorithm != 0 {
            return Err(invalid("the archive's data is compressed inside it; pg-backup dumps with --compress=0"));
        }
    } else {
        let level = reader.int()?;
        if format == FORMAT_CUSTOM && level != 0 {
            return Err(invalid("the archive's data is compressed inside it; pg-backup dumps with --compress=0"));
        }
    }
    for _ in 0..7 {
        reader.int()?; // creation time
    }
    for _ in 0..3 {
        reader.string()?; // database name, server version, pg_dump version
    }
    let head = Head { version, int_size: reader.int_size, off_size, format };
    let count = reader.int()?;
    if !(0..10_000_000).contains(&count) {
        return Err(invalid(format!("{count} entries in the table of contents is implausible")));
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let dump_id = reader.int()?;
        reader.int()?; // had a data dumper
        reader.string()?; // table oid
        reader.string()?; // oid
        let tag = reader.string()?.unwrap_or_default();
        let desc = reader.string()?.unwrap_or_default();
        reader.int()?; // section
        reader.string()?; // definition
        reader.string()?; // drop statement
        let copy_stmt = reader.string()?;
        let namespace = reader.string()?.unwrap_or_default();
        reader.string()?; // tablespace
        if at_least(version, 14) {
            reader.string()?; // table access method
        }
        if at_least(version, 16) {
            reader.int()?; // relkind
        }
        reader.string()?; // owner
        reader.string()?; // "false" (WITH OIDS)
        while reader.string()?.is_some() {} // dependencies
        let file = match head.format {
            FORMAT_CUSTOM => {
                reader.byte()?; // offset state
                reader.skip(head.off_size)?;
                None
            }
            f if FORMAT_DIRECTORY.contains(&f) => reader.string()?,
            other => return Err(invalid(format!("archive format {other} is not custom or directory"))),
        };
        entries.push((dump_id, Entry { desc, namespace, tag, copy_stmt, file }));
    }
    Ok((head, entries))
}

/// The column list of `COPY schema.table (a, b) FROM stdin;`.
fn copy_columns(statement: &str) -> Option<String> {
    let open = statement.find('(')?;
    let close = statement.rfind(')')?;
    (close > open).then(|| statement[open + 1..close].trim().to_owned())
}

fn table_data(entry: &Entry, hash: RowHash) -> TableData {
    let (rows, content_hash) = hash.finish();
    TableData {
        schema: entry.namespace.clone(),
        name: entry.tag.clone(),
        columns: entry.copy_stmt.as_deref().and_then(copy_columns),
        rows,
        content_hash,
    }
}

/// Scans a custom-format archive written with `--compress=0`, as it streams.
pub fn scan_custom(input: impl Read) -> io::Result<Vec<TableData>> {
    let mut reader = Reader { inner: io::BufReader::with_capacity(1 << 20, input), int_size: 4 };
    let (head, entries) = read_toc(&mut reader)?;
    if head.format != FORMAT_CUSTOM {
        return Err(invalid("not a custom-format archive"));
    }
    let by_id: BTreeMap<i64, &Entry> = entries.iter().map(|(id, e)| (*id, e)).collect();
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    while let Some(block) = reader.byte_or_end()? {
        match block {
            BLK_DATA => {
                let id = reader.int()?;
                let entry = by_id.get(&id).ok_or_else(|| invalid(format!("data for unknown entry {id}")))?;
                let mut hash = RowHash::default();
                loop {
                    let len = reader.int()?;
                    if len == 0 {
                        break;
                    }
                    let len = usize::try_from(len).map_err(|_| invalid("a negative data chunk length"))?;
                    chunk.resize(len, 0);
                    reader.inner.read_exact(&mut chunk)?;
                    hash.feed(&chunk);
                }
                if entry.desc == "TABLE DATA" {
                    out.push(table_data(entry, hash));
                }
            }
            BLK_BLOBS => {
                reader.int()?;
                while reader.int()? != 0 {
                    loop {
                        let len = reader.int()?;
                        if len == 0 {
                            break;
                        }
                        reader.skip(usize::try_from(len).map_err(|_| invalid("a negative data chunk length"))?)?;
                    }
                }
            }
            other => return Err(invalid(format!("unknown data block type {other}"))),
        }
    }
    let _ = head.int_size;
    let _ = head.version;
    Ok(out)
}

/// The data files of a directory-format archive, from its `toc.dat`: `(file name, entry)`.
pub struct DirectoryToc {
    entries: Vec<Entry>,
}

impl DirectoryToc {
    pub fn read(toc: impl Read) -> io::Result<DirectoryToc> {
        let mut reader = Reader { inner: io::BufReader::new(toc), int_size: 4 };
        let (head, entries) = read_toc(&mut reader)?;
        if !FORMAT_DIRECTORY.contains(&head.format) {
            return Err(invalid("toc.dat is not a directory-format table of contents"));
        }
        Ok(DirectoryToc {
            entries: entries
                .into_iter()
                .map(|(_, e)| e)
                .filter(|e| e.desc == "TABLE DATA" && e.file.is_some())
                .collect(),
        })
    }

    /// The table whose data is in `file` (`1234.dat`, `1234.dat.gz`, ...).
    pub fn table_for(&self, file: &str) -> Option<(&str, &str)> {
        self.find(file).map(|e| (e.namespace.as_str(), e.tag.as_str()))
    }

    fn find(&self, file: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| {
            e.file
                .as_deref()
                .is_some_and(|f| file == f || file.strip_prefix(f).is_some_and(|rest| rest.starts_with('.')))
        })
    }

    /// The table data of `file` once its (decompressed) content has been hashed.
    pub fn table_data(&self, file: &str, hash: RowHash) -> Option<TableData> {
        self.find(file).map(|e| table_data(e, hash))
    }
}

/// Scans a plain-format (SQL) dump as it streams: the rows between each `COPY ... FROM stdin;`
/// and its `\.` line.
#[derive(Debug, Default)]
pub struct PlainScanner {
    line: Vec<u8>,
    current: Option<(TableData, RowHash)>,
    done: Vec<TableData>,
}

impl PlainScanner {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if let Some((_, hash)) = &mut self.current {
                // Inside COPY data: hand whole lines to the hash until the terminator.
                if self.line.is_empty() {
                    match memchr::memchr(b'\n', data) {
                        Some(end) => {
                            let line = &data[..end];
                            if line == b"\\." {
                                self.end_copy();
                            } else {
                                hash.feed(&data[..=end]);
                            }
                            data = &data[end + 1..];
                        }
                        None => {
                            self.line.extend_from_slice(data);
                            data = &[];
                        }
                    }
                    continue;
                }
            }
            match memchr::memchr(b'\n', data) {
                Some(end) => {
                    self.line.extend_from_slice(&data[..end]);
                    data = &data[end + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.line_done(&line);
                }
                None => {
                    self.line.extend_from_slice(data);
                    data = &[];
                }
            }
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        if let Some((_, hash)) = &mut self.current {
            if line == b"\\." {
                self.end_copy();
            } else {
                hash.feed(line);
                hash.feed(b"\n");
            }
            return;
        }
        let Ok(text) = std::str::from_utf8(line) else { return };
        if let Some(rest) = text.strip_prefix("COPY ")
            && let Some(head) = rest.strip_suffix(" FROM stdin;")
        {
            let (name_part, columns) = match head.find(" (") {
                Some(i) => (&head[..i], copy_columns(head)),
                None => (head, None),
            };
            let (schema, name) = split_qualified(name_part);
            let table = TableData { schema, name, columns, rows: 0, content_hash: String::new() };
            self.current = Some((table, RowHash::default()));
        }
    }

    fn end_copy(&mut self) {
        if let Some((mut table, hash)) = self.current.take() {
            let (rows, content_hash) = hash.finish();
            table.rows = rows;
            table.content_hash = content_hash;
            self.done.push(table);
        }
    }

    pub fn finish(mut self) -> io::Result<Vec<TableData>> {
        if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        if let Some((table, _)) = &self.current {
            return Err(invalid(format!("the dump ends inside the data of {}.{}", table.schema, table.name)));
        }
        Ok(self.done)
    }
}

/// `schema.table` with either part possibly double-quoted.
fn split_qualified(text: &str) -> (String, String) {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                current.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            '.' if !quoted => parts.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    parts.push(current);
    match parts.len() {
        1 => ("public".into(), parts.remove(0)),
        _ => {
            let name = parts.pop().unwrap_or_default();
            (parts.join("."), name)
        }
    }
}

/// Scans a stored backup: a custom or plain dump (compressed as the manifest says), or the folder
/// of a directory-format dump.
pub fn scan_stored(
    format: crate::manifest::Format,
    compression: crate::manifest::Compression,
    path: &std::path::Path,
) -> io::Result<Vec<TableData>> {
    use crate::manifest::Format;
    match format {
        Format::Custom => scan_custom(decompress(std::fs::File::open(path)?, compression)?),
        Format::Plain => {
            let mut scanner = PlainScanner::default();
            read_chunks(decompress(std::fs::File::open(path)?, compression)?, |chunk| scanner.feed(chunk))?;
            scanner.finish()
        }
        Format::Directory => {
            let toc = DirectoryToc::read(std::fs::File::open(path.join("toc.dat"))?)?;
            let mut out = Vec::new();
            let mut names: Vec<String> =
                std::fs::read_dir(path)?.flatten().filter_map(|e| e.file_name().into_string().ok()).collect();
            names.sort();
            for name in names {
                if toc.table_for(&name).is_none() {
                    continue;
                }
                let file = std::fs::File::open(path.join(&name))?;
                let compression = if name.ends_with(".gz") {
                    crate::manifest::Compression::Gzip(6)
                } else if name.ends_with(".zst") {
                    crate::manifest::Compression::Zstd(3)
                } else {
                    crate::manifest::Compression::None
                };
                let mut hash = RowHash::default();
                read_chunks(decompress(file, compression)?, |chunk| hash.feed(chunk))?;
                out.extend(toc.table_data(&name, hash));
            }
            Ok(out)
        }
    }
}

/// Hands `input` to `each` in chunks of a megabyte.
fn read_chunks(mut input: impl Read, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        each(&buf[..n]);
    }
}

fn decompress(file: std::fs::File, compression: crate::manifest::Compression) -> io::Result<Box<dyn Read>> {
    use crate::manifest::Compression;
    let file = io::BufReader::with_capacity(1 << 20, file);
    Ok(match compression {
        Compression::Zstd(_) => Box::new(zstd::stream::read::Decoder::with_buffer(file)?),
        Compression::Gzip(_) => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::None => Box::new(file),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_hash_ignores_order_and_chunking() {
        let mut a = RowHash::default();
        a.feed(b"1\tx\n2\ty\n3\tz\n");
        let mut b = RowHash::default();
        for piece in [&b"3\tz"[..], b"\n2", b"\ty\n1\t", b"x\n"] {
            b.feed(piece);
        }
        let (ra, ha) = a.finish();
        let (rb, hb) = b.finish();
        assert_eq!((ra, &ha), (3, &hb));
        assert_eq!(rb, 3);
        let mut c = RowHash::default();
        c.feed(b"1\tx\n2\ty\n3\tZ\n");
        assert_ne!(c.finish().1, ha, "a changed value changes the hash");
        let mut d = RowHash::default();
        d.feed(b"1\tx\n1\tx\n2\ty\n3\tz\n");
        assert_ne!(d.finish().1, ha, "a duplicated row changes the hash");
    }

    #[test]
    fn the_end_of_data_line_is_not_a_row() {
        let mut hash = RowHash::default();
        hash.feed(b"1\n2\n\\.\n\n\n");
        let mut plain = RowHash::default();
        plain.feed(b"2\n1\n");
        assert_eq!(hash.finish(), plain.finish());
        let mut escaped = RowHash::default();
        escaped.feed(b"\\\\.\n");
        assert_eq!(escaped.finish().0, 1, "a value that is a backslash and a dot is escaped, and a row");
    }

    #[test]
    fn plain_dump_tables() {
        let dump = "SET x = 1;\nCOPY public.t (id, \"Name\") FROM stdin;\n1\ta\n2\tb\n\\.\n\n\
                    COPY \"odd.schema\".\"T \"\"q\"\"\" (v) FROM stdin;\n\\.\n\
                    CREATE TABLE s (a int);\n-- PostgreSQL database dump complete\n";
        for size in [1, 3, 7, dump.len()] {
            let mut scanner = PlainScanner::default();
            for piece in dump.as_bytes().chunks(size) {
                scanner.feed(piece);
            }
            let tables = scanner.finish().unwrap();
            assert_eq!(tables.len(), 2, "chunks of {size}");
            assert_eq!((tables[0].schema.as_str(), tables[0].name.as_str(), tables[0].rows), ("public", "t", 2));
            assert_eq!(tables[0].columns.as_deref(), Some("id, \"Name\""));
            assert_eq!(
                (tables[1].schema.as_str(), tables[1].name.as_str(), tables[1].rows),
                ("odd.schema", "T \"q\"", 0)
            );
            let mut expected = RowHash::default();
            expected.feed(b"2\tb\n1\ta\n");
            assert_eq!(tables[0].content_hash, expected.finish().1);
        }
    }

    #[test]
    fn a_truncated_plain_dump_is_an_error() {
        let mut scanner = PlainScanner::default();
        scanner.feed(b"COPY public.t (id) FROM stdin;\n1\n2\n");
        assert!(scanner.finish().unwrap_err().to_string().contains("public.t"));
    }

    #[test]
    fn garbage_is_not_an_archive() {
        let err = scan_custom(&b"hello world"[..]).unwrap_err();
        assert!(err.to_string().contains("PGDMP"), "{err}");
        let err = scan_custom(&b"PGDMP\x01\x09\x00"[..]).unwrap_err();
        assert!(err.to_string().contains("1.9"), "{err}");
    }
}
