//! Streaming ZIP archives in mongodump's directory layout.
//!
//! A MongoDB backup is one ZIP archive (compressed as a whole by zstd outside this module) whose
//! entries are `<db>/<collection>.bson` (a concatenation of BSON documents, size unknown until the
//! end) and `<db>/<collection>.metadata.json` (small, known size).
//!
//! [`ZipStreamWriter`] produces the archive on a non-seekable [`Write`]:
//!
//! * every entry is *stored* (method 0), its name UTF-8 (flag bit 11), its time 1980-01-01 00:00
//!   (reproducible output), "version made by" Unix with permissions 0644;
//! * an entry whose bytes are known ([`ZipStreamWriter::add_whole`]) has its CRC-32 and sizes in
//!   the local header;
//! * an entry of unknown size ([`ZipStreamWriter::start_stream`]) has flag bit 3, a ZIP64 extra
//!   field in the local header (sizes 0xFFFFFFFF there), and after its data a data descriptor
//!   with signature, CRC-32 and 8-byte sizes;
//! * the central directory carries ZIP64 extra fields only for the values that do not fit in 32
//!   bits (as APPNOTE requires and Python's `zipfile` insists on), and a ZIP64 end of central
//!   directory record and locator precede the end record when the entry count, the directory's
//!   offset or its size do not fit.
//!
//! Info-ZIP `unzip` and Python's `zipfile` extract the result (they read the central directory).
//!
//! [`ZipStreamReader`] reads such an archive back *sequentially* from a non-seekable [`Read`]
//! (the zstd decoder's output). A stored entry with a data descriptor has no length anywhere
//! before its data, so the reader relies on the data being BSON documents: each starts with its
//! little-endian `i32` length (5 ..= 16 MiB + 16 KiB), and the data ends where the next four
//! bytes are the descriptor signature `PK\x07\x08` (0x08074b50, far above the maximum document
//! length). [`ZipStreamWriter::write_stream`] checks that framing as it goes, so an archive it
//! wrote can always be read back. The reader verifies every CRC-32 and size, and
//! [`ZipStreamReader::finish`] checks the central directory and end records against what was
//! read, so corruption, truncation and trailing garbage are all reported as
//! [`io::ErrorKind::InvalidData`].

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};

const LOCAL_SIG: u32 = 0x0403_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const DESCRIPTOR_SIG: u32 = 0x0807_4b50;
const EOCD_SIG: u32 = 0x0605_4b50;
const ZIP64_EOCD_SIG: u32 = 0x0606_4b50;
const ZIP64_LOCATOR_SIG: u32 = 0x0706_4b50;
const ZIP64_EXTRA_ID: u16 = 0x0001;

const FLAG_ENCRYPTED: u16 = 1;
const FLAG_DESCRIPTOR: u16 = 1 << 3;
const FLAG_UTF8: u16 = 1 << 11;

/// "Version needed to extract" of a plain entry (2.0) and of a ZIP64 one (4.5).
const VERSION_DEFAULT: u16 = 20;
const VERSION_ZIP64: u16 = 45;
/// "Version made by": host 3 (Unix), so that the external attributes are Unix permissions.
const VERSION_MADE_BY: u16 = (3 << 8) | VERSION_ZIP64;
/// DOS time 00:00:00 and date 1980-01-01.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;
/// Regular file, mode 0644.
const EXTERNAL_ATTRS: u32 = 0o100_644 << 16;

const SENTINEL32: u32 = 0xFFFF_FFFF;
const SENTINEL16: u16 = 0xFFFF;
/// A size or offset at or above this needs ZIP64 (0xFFFFFFFF itself is the "see ZIP64" marker).
const ZIP64_LIMIT: u64 = 0xFFFF_FFFF;
/// An entry count at or above this needs the ZIP64 end of central directory record.
const COUNT_LIMIT: u64 = 0xFFFF;

/// Fixed part of a local header after its signature.
const LOCAL_FIXED: usize = 26;
/// Fixed part of a central directory record after its signature.
const CENTRAL_FIXED: usize = 42;
/// Fixed part of the ZIP64 end of central directory record after its 12-byte head.
const ZIP64_EOCD_FIXED: usize = 44;

/// Smallest BSON document: length prefix and terminating NUL.
pub const MIN_BSON_DOCUMENT: usize = 5;
/// Largest BSON document MongoDB produces internally (16 MiB + 16 KiB).
pub const MAX_BSON_DOCUMENT: usize = 16 * 1024 * 1024 + 16 * 1024;
/// Size of the chunks the reader hands out and of its read buffer.
const CHUNK: usize = 1 << 20;

// ------------------------------------------------------------------------------------------------
// Helpers

fn invalid_data(entry: &str, msg: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zip entry '{entry}': {msg}"))
}

fn invalid_archive(msg: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zip archive: {msg}"))
}

fn invalid_input(msg: impl fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, format!("zip writer: {msg}"))
}

/// Adds `context` to an error of the underlying reader; an early end of file becomes InvalidData
/// ("truncated").
fn read_context(e: io::Error, context: &str) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        io::Error::new(io::ErrorKind::InvalidData, format!("{context}: archive truncated"))
    } else {
        io::Error::new(e.kind(), format!("{context}: {e}"))
    }
}

fn entry_context(entry: &str, what: &str) -> String {
    format!("zip entry '{entry}': {what}")
}

/// The BSON document length encoded in `head`, if it is a plausible one.
fn document_length(head: [u8; 4]) -> Option<usize> {
    let len = i32::from_le_bytes(head);
    usize::try_from(len).ok().filter(|l| (MIN_BSON_DOCUMENT..=MAX_BSON_DOCUMENT).contains(l))
}

/// `v` as a 32-bit field, or the ZIP64 marker if it is at or above `limit`.
fn narrow32(v: u64, limit: u64) -> u32 {
    if v >= limit { SENTINEL32 } else { u32::try_from(v).unwrap_or(SENTINEL32) }
}

/// `v` as a 16-bit count, or the ZIP64 marker if it is at or above `limit`.
fn narrow16(v: u64, limit: u64) -> u16 {
    if v >= limit { SENTINEL16 } else { u16::try_from(v).unwrap_or(SENTINEL16) }
}

/// A ZIP64 extended information extra field holding `values` in order.
fn zip64_extra(values: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 8 * values.len());
    out.extend_from_slice(&ZIP64_EXTRA_ID.to_le_bytes());
    // At most 3 values: the length always fits.
    out.extend_from_slice(&u16::try_from(8 * values.len()).unwrap_or(0).to_le_bytes());
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// Little-endian fields of a byte slice; out-of-range reads give 0 (callers read fixed-size
/// buffers, so they never are).
fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2).and_then(|s| s.try_into().ok()).map_or(0, u16::from_le_bytes)
}
fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).and_then(|s| s.try_into().ok()).map_or(0, u32::from_le_bytes)
}
fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8).and_then(|s| s.try_into().ok()).map_or(0, u64::from_le_bytes)
}

/// The data of the ZIP64 extra field in `extra`, if any; malformed extra data is an error.
fn find_zip64(entry: &str, extra: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let mut rest = extra;
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err(invalid_data(entry, "malformed extra field"));
        }
        let id = le16(rest, 0);
        let len = usize::from(le16(rest, 2));
        let data = rest.get(4..4 + len).ok_or_else(|| invalid_data(entry, "malformed extra field"))?;
        if id == ZIP64_EXTRA_ID {
            return Ok(Some(data.to_vec()));
        }
        rest = &rest[4 + len..];
    }
    Ok(None)
}

/// Resolves 32-bit fields against a ZIP64 extra field: every field equal to the marker takes the
/// next 8-byte value of `zip64`, in the order given (APPNOTE 4.5.3).
fn resolve_zip64(entry: &str, fields: &[u32], zip64: Option<&[u8]>) -> io::Result<Vec<u64>> {
    let mut at = 0;
    let mut out = Vec::with_capacity(fields.len());
    for &f in fields {
        if f == SENTINEL32 {
            let data = zip64.ok_or_else(|| {
                invalid_data(entry, "a size or offset is 0xFFFFFFFF but there is no ZIP64 extra field")
            })?;
            if data.len() < at + 8 {
                return Err(invalid_data(entry, "ZIP64 extra field too short"));
            }
            out.push(le64(data, at));
            at += 8;
        } else {
            out.push(u64::from(f));
        }
    }
    Ok(out)
}

// ------------------------------------------------------------------------------------------------
// Writer

/// What the central directory needs to know about a written entry.
struct WrittenEntry {
    name: String,
    crc: u32,
    size: u64,
    offset: u64,
    streamed: bool,
}

/// Tracks BSON document boundaries in a streamed entry's data, which may be split anywhere
/// between [`ZipStreamWriter::write_stream`] calls.
#[derive(Clone, Copy, Default)]
struct Framing {
    /// Bytes of the current length prefix seen so far.
    prefix: [u8; 4],
    prefix_len: usize,
    /// Bytes of the current document still to come after its prefix.
    remaining: u64,
}

impl Framing {
    /// Advances over `data`, which starts at byte `at` of the entry's data.
    fn advance(&mut self, mut data: &[u8], mut at: u64) -> Result<(), String> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(data.len());
                self.remaining -= take as u64;
                data = &data[take..];
                at += take as u64;
            } else {
                let take = (4 - self.prefix_len).min(data.len());
                self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&data[..take]);
                self.prefix_len += take;
                data = &data[take..];
                at += take as u64;
                if self.prefix_len == 4 {
                    let len = document_length(self.prefix).ok_or_else(|| {
                        format!(
                            "invalid BSON document length {} at byte {} of the streamed data \
                             (streamed entries must be a concatenation of BSON documents)",
                            i32::from_le_bytes(self.prefix),
                            at - 4
                        )
                    })?;
                    self.remaining = len as u64 - 4;
                    self.prefix_len = 0;
                }
            }
        }
        Ok(())
    }

    fn at_boundary(&self) -> bool {
        self.remaining == 0 && self.prefix_len == 0
    }
}

/// The streamed entry being written.
struct OpenStream {
    name: String,
    offset: u64,
    hasher: crc32fast::Hasher,
    size: u64,
    framing: Framing,
}

/// Writes a ZIP archive to a non-seekable writer, entry after entry.
///
/// Headers are written with one `write_all` each and data is passed through unbuffered, so the
/// inner writer should buffer (a zstd encoder does). If a write to the inner writer fails, the
/// archive is incomplete and every later call fails. Dropping the writer without
/// [`finish`](Self::finish) leaves an archive without central directory, which no tool accepts.
///
/// ```rust
/// use mongo_backup::zipstream::{EntryKind, ZipStreamReader, ZipStreamWriter};
///
/// // Two BSON documents: {} and {"a": 1}.
/// let empty: &[u8] = b"\x05\x00\x00\x00\x00";
/// let a_is_1: &[u8] = b"\x0c\x00\x00\x00\x10a\x00\x01\x00\x00\x00\x00";
/// let metadata = br#"{"options":{},"indexes":[]}"#;
///
/// let mut zip = ZipStreamWriter::new(Vec::new());
/// zip.add_whole("recommend/items.metadata.json", metadata)?;
/// zip.start_stream("recommend/items.bson")?;
/// zip.write_stream(&empty[..3])?; // Documents may be split anywhere.
/// zip.write_stream(&[&empty[3..], a_is_1].concat())?;
/// assert_eq!(zip.finish_stream()?.0, 17);
/// let archive = zip.finish()?;
///
/// let mut reader = ZipStreamReader::new(archive.as_slice());
/// let first = reader.next_entry()?.expect("the metadata");
/// assert_eq!((first.kind, first.size), (EntryKind::Whole, Some(metadata.len() as u64)));
/// let second = reader.next_entry()?.expect("the documents");
/// assert_eq!((second.name.as_str(), second.kind), ("recommend/items.bson", EntryKind::Streamed));
/// let mut documents = Vec::new();
/// reader.read_documents(&mut |doc| {
///     documents.push(doc.to_vec());
///     Ok(())
/// })?;
/// assert_eq!(documents, [empty, a_is_1]);
/// assert!(reader.next_entry()?.is_none());
/// reader.finish()?; // Checks the central directory against what was read.
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ZipStreamWriter<W: Write> {
    inner: W,
    written: u64,
    entries: Vec<WrittenEntry>,
    stream: Option<OpenStream>,
    poisoned: bool,
    /// Sizes and offsets at or above this use ZIP64 ([`ZIP64_LIMIT`] except in tests).
    zip64_limit: u64,
    /// Entry counts at or above this use the ZIP64 end records ([`COUNT_LIMIT`] except in tests).
    count_limit: u64,
}

impl<W: Write> fmt::Debug for ZipStreamWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZipStreamWriter")
            .field("bytes_written", &self.written)
            .field("entries", &self.entries.len())
            .field("open_stream", &self.stream.as_ref().map(|s| s.name.as_str()))
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl<W: Write> ZipStreamWriter<W> {
    /// Starts an archive at the current position of `inner` (offsets count from there, so
    /// `inner` should be at the start of its output).
    pub fn new(inner: W) -> Self {
        Self::with_limits(inner, ZIP64_LIMIT, COUNT_LIMIT)
    }

    /// A writer that switches to ZIP64 at lower thresholds, to test the ZIP64 records without
    /// writing 4 GiB.
    fn with_limits(inner: W, zip64_limit: u64, count_limit: u64) -> Self {
        Self { inner, written: 0, entries: Vec::new(), stream: None, poisoned: false, zip64_limit, count_limit }
    }

    /// Bytes written to the inner writer so far.
    pub fn bytes_written(&self) -> u64 {
        self.written
    }

    /// An entry whose bytes are known: local header with CRC and sizes, no data descriptor.
    pub fn add_whole(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        self.check_idle(name)?;
        let size = data.len() as u64;
        let crc = crc32fast::hash(data);
        let offset = self.written;
        let (version, size32, extra) = if size >= self.zip64_limit {
            (VERSION_ZIP64, SENTINEL32, zip64_extra(&[size, size]))
        } else {
            (VERSION_DEFAULT, narrow32(size, ZIP64_LIMIT), Vec::new())
        };
        let header = local_header(name, version, FLAG_UTF8, crc, size32, &extra);
        self.write_raw(&header)?;
        self.write_raw(data)?;
        self.entries.push(WrittenEntry { name: name.to_owned(), crc, size, offset, streamed: false });
        Ok(())
    }

    /// Starts an entry of unknown size: general-purpose flag bit 3, a data descriptor after the
    /// data, and a ZIP64 extra field in the local header so that the descriptor carries 8-byte
    /// sizes.
    ///
    /// The data, given to [`write_stream`](Self::write_stream), must be a concatenation of BSON
    /// documents: [`ZipStreamReader`] finds the end of the entry by walking them.
    pub fn start_stream(&mut self, name: &str) -> io::Result<()> {
        self.check_idle(name)?;
        let offset = self.written;
        let extra = zip64_extra(&[0, 0]);
        let header = local_header(name, VERSION_ZIP64, FLAG_UTF8 | FLAG_DESCRIPTOR, 0, SENTINEL32, &extra);
        self.write_raw(&header)?;
        self.stream = Some(OpenStream {
            name: name.to_owned(),
            offset,
            hasher: crc32fast::Hasher::new(),
            size: 0,
            framing: Framing::default(),
        });
        Ok(())
    }

    /// Appends bytes to the entry started by [`start_stream`](Self::start_stream).
    ///
    /// The bytes may split documents anywhere, but a document length outside
    /// 5 ..= 16 MiB + 16 KiB is refused (InvalidInput, nothing of `data` written).
    pub fn write_stream(&mut self, data: &[u8]) -> io::Result<()> {
        self.check_usable()?;
        let stream = self.stream.as_ref().ok_or_else(|| invalid_input("write_stream without start_stream"))?;
        let mut framing = stream.framing;
        framing.advance(data, stream.size).map_err(|msg| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("zip entry '{}': {msg}", stream.name))
        })?;
        self.write_raw(data)?;
        if let Some(stream) = self.stream.as_mut() {
            stream.hasher.update(data);
            stream.size += data.len() as u64;
            stream.framing = framing;
        }
        Ok(())
    }

    /// Ends the streamed entry: writes the data descriptor (signature 0x08074b50, CRC-32, 8-byte
    /// compressed and uncompressed sizes). Returns the entry's size and CRC-32.
    ///
    /// Fails with InvalidInput, the entry left open, if the data ends inside a document.
    pub fn finish_stream(&mut self) -> io::Result<(u64, u32)> {
        self.check_usable()?;
        let stream = self.stream.as_ref().ok_or_else(|| invalid_input("finish_stream without start_stream"))?;
        if !stream.framing.at_boundary() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("zip entry '{}': streamed data ends inside a BSON document", stream.name),
            ));
        }
        let crc = stream.hasher.clone().finalize();
        let size = stream.size;
        let mut descriptor = Vec::with_capacity(24);
        descriptor.extend_from_slice(&DESCRIPTOR_SIG.to_le_bytes());
        descriptor.extend_from_slice(&crc.to_le_bytes());
        descriptor.extend_from_slice(&size.to_le_bytes());
        descriptor.extend_from_slice(&size.to_le_bytes());
        self.write_raw(&descriptor)?;
        if let Some(stream) = self.stream.take() {
            self.entries.push(WrittenEntry { name: stream.name, crc, size, offset: stream.offset, streamed: true });
        }
        Ok((size, crc))
    }

    /// Writes the central directory (ZIP64 extra fields for the sizes and offsets that need
    /// them), the ZIP64 end of central directory record and locator when needed (65535 entries
    /// or more, or the directory at or beyond 4 GiB), and the end record; flushes and returns the
    /// inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.check_usable()?;
        if let Some(stream) = &self.stream {
            return Err(invalid_input(format_args!("finish while streamed entry '{}' is still open", stream.name)));
        }
        let cd_start = self.written;
        let mut buf = Vec::with_capacity(64 * 1024);
        let entries = std::mem::take(&mut self.entries);
        for e in &entries {
            self.central_record(e, &mut buf);
            if buf.len() >= 60 * 1024 {
                self.write_raw(&buf)?;
                buf.clear();
            }
        }
        self.write_raw(&buf)?;
        buf.clear();
        let cd_size = self.written - cd_start;
        let count = entries.len() as u64;
        let limit = self.zip64_limit;
        if count >= self.count_limit || cd_start >= limit || cd_size >= limit {
            let z64_offset = self.written;
            buf.extend_from_slice(&ZIP64_EOCD_SIG.to_le_bytes());
            buf.extend_from_slice(&(ZIP64_EOCD_FIXED as u64).to_le_bytes());
            buf.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
            buf.extend_from_slice(&VERSION_ZIP64.to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes()); // this disk
            buf.extend_from_slice(&0u32.to_le_bytes()); // disk of the central directory
            buf.extend_from_slice(&count.to_le_bytes()); // entries on this disk
            buf.extend_from_slice(&count.to_le_bytes()); // entries in total
            buf.extend_from_slice(&cd_size.to_le_bytes());
            buf.extend_from_slice(&cd_start.to_le_bytes());
            buf.extend_from_slice(&ZIP64_LOCATOR_SIG.to_le_bytes());
            buf.extend_from_slice(&0u32.to_le_bytes()); // disk of the ZIP64 end record
            buf.extend_from_slice(&z64_offset.to_le_bytes());
            buf.extend_from_slice(&1u32.to_le_bytes()); // number of disks
        }
        let count16 = narrow16(count, self.count_limit);
        buf.extend_from_slice(&EOCD_SIG.to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes()); // this disk
        buf.extend_from_slice(&0u16.to_le_bytes()); // disk of the central directory
        buf.extend_from_slice(&count16.to_le_bytes());
        buf.extend_from_slice(&count16.to_le_bytes());
        buf.extend_from_slice(&narrow32(cd_size, limit).to_le_bytes());
        buf.extend_from_slice(&narrow32(cd_start, limit).to_le_bytes());
        buf.extend_from_slice(&0u16.to_le_bytes()); // comment length
        self.write_raw(&buf)?;
        self.inner.flush()?;
        Ok(self.inner)
    }

    fn central_record(&self, e: &WrittenEntry, out: &mut Vec<u8>) {
        let limit = self.zip64_limit;
        let mut z64 = Vec::new();
        if e.size >= limit {
            z64.push(e.size); // uncompressed
            z64.push(e.size); // compressed
        }
        if e.offset >= limit {
            z64.push(e.offset);
        }
        let extra = if z64.is_empty() { Vec::new() } else { zip64_extra(&z64) };
        let version = if e.streamed || !z64.is_empty() { VERSION_ZIP64 } else { VERSION_DEFAULT };
        let flags = if e.streamed { FLAG_UTF8 | FLAG_DESCRIPTOR } else { FLAG_UTF8 };
        let size32 = narrow32(e.size, limit);
        out.extend_from_slice(&CENTRAL_SIG.to_le_bytes());
        out.extend_from_slice(&VERSION_MADE_BY.to_le_bytes());
        out.extend_from_slice(&version.to_le_bytes());
        out.extend_from_slice(&flags.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // stored
        out.extend_from_slice(&DOS_TIME.to_le_bytes());
        out.extend_from_slice(&DOS_DATE.to_le_bytes());
        out.extend_from_slice(&e.crc.to_le_bytes());
        out.extend_from_slice(&size32.to_le_bytes()); // compressed
        out.extend_from_slice(&size32.to_le_bytes()); // uncompressed
        out.extend_from_slice(&name_len(&e.name).to_le_bytes());
        out.extend_from_slice(&u16::try_from(extra.len()).unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes()); // comment length
        out.extend_from_slice(&0u16.to_le_bytes()); // disk number start
        out.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        out.extend_from_slice(&EXTERNAL_ATTRS.to_le_bytes());
        out.extend_from_slice(&narrow32(e.offset, limit).to_le_bytes());
        out.extend_from_slice(e.name.as_bytes());
        out.extend_from_slice(&extra);
    }

    /// Fails if the writer is poisoned, a streamed entry is open or `name` cannot be written.
    fn check_idle(&self, name: &str) -> io::Result<()> {
        self.check_usable()?;
        if let Some(stream) = &self.stream {
            return Err(invalid_input(format_args!(
                "cannot start entry '{name}' while streamed entry '{}' is open",
                stream.name
            )));
        }
        if name.is_empty() || name.len() > usize::from(u16::MAX) {
            return Err(invalid_input(format_args!(
                "entry name must be 1 to 65535 bytes long, '{name}' is {}",
                name.len()
            )));
        }
        Ok(())
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.poisoned { Err(io::Error::other("zip writer: unusable after an earlier write error")) } else { Ok(()) }
    }

    fn write_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.check_usable()?;
        match self.inner.write_all(bytes) {
            Ok(()) => {
                self.written += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.poisoned = true;
                Err(e)
            }
        }
    }
}

/// Length of a name already checked by `check_idle`.
fn name_len(name: &str) -> u16 {
    u16::try_from(name.len()).unwrap_or(u16::MAX)
}

fn local_header(name: &str, version: u16, flags: u16, crc: u32, size32: u32, extra: &[u8]) -> Vec<u8> {
    let mut h = Vec::with_capacity(30 + name.len() + extra.len());
    h.extend_from_slice(&LOCAL_SIG.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes()); // stored
    h.extend_from_slice(&DOS_TIME.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&size32.to_le_bytes()); // compressed
    h.extend_from_slice(&size32.to_le_bytes()); // uncompressed
    h.extend_from_slice(&name_len(name).to_le_bytes());
    h.extend_from_slice(&u16::try_from(extra.len()).unwrap_or(0).to_le_bytes());
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(extra);
    h
}

// ------------------------------------------------------------------------------------------------
// Reader

/// How an entry's data is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Size and CRC-32 in the local header ([`ZipStreamWriter::add_whole`]).
    Whole,
    /// Data descriptor after the data ([`ZipStreamWriter::start_stream`]); the data must be BSON
    /// documents.
    Streamed,
}

/// An entry's local header, as returned by [`ZipStreamReader::next_entry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The entry's name, e.g. `db/collection.bson`, exactly as stored (not sanitised: check it
    /// before using it as a path).
    pub name: String,
    /// Whole or streamed.
    pub kind: EntryKind,
    /// The size of a whole entry; `None` for a streamed one (known only after its data).
    pub size: Option<u64>,
}

/// The entry whose data comes next.
struct Current {
    name: String,
    offset: u64,
    streamed: bool,
    /// The data descriptor has 8-byte sizes (ZIP64 extra field in the local header).
    zip64_descriptor: bool,
    /// Size and CRC-32 of a whole entry.
    size: u64,
    crc: u32,
}

/// An entry read completely, to check the central directory against.
struct SeenEntry {
    name: String,
    offset: u64,
    streamed: bool,
    size: u64,
    crc: u32,
}

enum ReadState {
    /// Between entries (or at the start).
    Idle,
    /// After a local header, before the entry's data.
    InEntry(Current),
    /// The central directory (or an end record) starts at `cd_start`; its signature `sig` has
    /// been read.
    AtCentral { cd_start: u64, sig: u32 },
    /// An error left the stream at an unknown position.
    Failed,
}

/// Reads a ZIP archive written by [`ZipStreamWriter`] sequentially from a non-seekable reader.
///
/// Call [`next_entry`](Self::next_entry) until it returns `None`, reading each entry with
/// [`read_entry`](Self::read_entry) or [`read_documents`](Self::read_documents) (or skipping it),
/// then [`finish`](Self::finish). Data is handed out before the entry's CRC-32 can be checked:
/// treat everything written from an entry as invalid if its read fails. After any error other
/// than a misuse of the API, the reader is unusable.
pub struct ZipStreamReader<R: Read> {
    inner: BufReader<R>,
    pos: u64,
    state: ReadState,
    seen: Vec<SeenEntry>,
    /// Buffer of whole entries' chunks and of batched documents.
    chunk: Vec<u8>,
    /// Buffer of one document.
    doc: Vec<u8>,
}

impl<R: Read> fmt::Debug for ZipStreamReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            ReadState::Idle => "between entries".to_owned(),
            ReadState::InEntry(c) => format!("in entry '{}'", c.name),
            ReadState::AtCentral { .. } => "at central directory".to_owned(),
            ReadState::Failed => "failed".to_owned(),
        };
        f.debug_struct("ZipStreamReader")
            .field("position", &self.pos)
            .field("entries_read", &self.seen.len())
            .field("state", &state)
            .finish_non_exhaustive()
    }
}

impl<R: Read> ZipStreamReader<R> {
    /// Reads an archive that starts at the current position of `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner: BufReader::with_capacity(256 * 1024, inner),
            pos: 0,
            state: ReadState::Idle,
            seen: Vec::new(),
            chunk: Vec::new(),
            doc: Vec::new(),
        }
    }

    /// The next entry's header, or `None` at the central directory. An entry not read yet is
    /// skipped (and verified).
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        match self.state {
            ReadState::Failed => return Err(failed()),
            ReadState::AtCentral { .. } => return Ok(None),
            ReadState::InEntry(_) => {
                self.read_entry(&mut |_| Ok(()))?;
            }
            ReadState::Idle => {}
        }
        let result = self.next_entry_inner();
        if result.is_err() {
            self.state = ReadState::Failed;
        }
        result
    }

    /// Reads the current entry's data into `out` chunk by chunk (at most 1 MiB, or one document
    /// if larger): for a whole entry exactly its size; for a streamed entry document by document
    /// until the data descriptor's signature. Verifies the CRC-32 and the sizes against the
    /// descriptor or the local header. Returns the entry's size.
    pub fn read_entry(&mut self, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
        let cur = self.take_current("read_entry")?;
        let result = if cur.streamed {
            let mut batch = std::mem::take(&mut self.chunk);
            batch.clear();
            let mut sink = |d: &[u8]| -> io::Result<()> {
                if !batch.is_empty() && batch.len() + d.len() > CHUNK {
                    out(&batch)?;
                    batch.clear();
                }
                if d.len() >= CHUNK {
                    out(d)
                } else {
                    batch.extend_from_slice(d);
                    Ok(())
                }
            };
            let mut result = self.read_docs(&cur, &mut sink);
            if result.is_ok()
                && !batch.is_empty()
                && let Err(e) = out(&batch)
            {
                result = Err(e);
            }
            self.chunk = batch;
            result
        } else {
            self.read_whole(&cur, out)
        };
        self.end_entry(cur, result)
    }

    /// Calls `doc` with each whole BSON document of the current entry (length prefix included),
    /// verifying the documents' framing, the CRC-32 and the sizes. Works for whole entries too.
    /// Returns the entry's size.
    pub fn read_documents(&mut self, doc: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<u64> {
        let cur = self.take_current("read_documents")?;
        let result = self.read_docs(&cur, doc);
        self.end_entry(cur, result)
    }

    /// Reads and checks the central directory and the end records against the entries read,
    /// so that truncation or trailing garbage is detected. Entries not read yet are read and
    /// verified first.
    pub fn finish(mut self) -> io::Result<()> {
        while self.next_entry()?.is_some() {}
        let ReadState::AtCentral { cd_start, sig } = self.state else {
            return Err(failed());
        };
        self.state = ReadState::Failed;
        self.check_central(cd_start, sig)
    }

    // --- internals

    fn take_current(&mut self, op: &str) -> io::Result<Current> {
        match std::mem::replace(&mut self.state, ReadState::Failed) {
            ReadState::InEntry(cur) => Ok(cur),
            ReadState::Failed => Err(failed()),
            other => {
                self.state = other;
                Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("zip reader: {op} without a current entry (call next_entry first)"),
                ))
            }
        }
    }

    /// Records a completely read entry (state stays Failed on error).
    fn end_entry(&mut self, cur: Current, result: io::Result<(u64, u32)>) -> io::Result<u64> {
        let (size, crc) = result?;
        self.seen.push(SeenEntry { name: cur.name, offset: cur.offset, streamed: cur.streamed, size, crc });
        self.state = ReadState::Idle;
        Ok(size)
    }

    fn fill(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact(buf)?;
        self.pos += buf.len() as u64;
        Ok(())
    }

    fn read_u32(&mut self, context: &dyn Fn() -> String) -> io::Result<u32> {
        let mut b = [0u8; 4];
        self.fill(&mut b).map_err(|e| read_context(e, &context()))?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_vec(&mut self, len: usize, context: &dyn Fn() -> String) -> io::Result<Vec<u8>> {
        let mut v = vec![0u8; len];
        self.fill(&mut v).map_err(|e| read_context(e, &context()))?;
        Ok(v)
    }

    /// Reads and discards `len` bytes.
    fn skip(&mut self, len: u64, context: &dyn Fn() -> String) -> io::Result<()> {
        let copied =
            io::copy(&mut (&mut self.inner).take(len), &mut io::sink()).map_err(|e| read_context(e, &context()))?;
        self.pos += copied;
        if copied < len {
            return Err(invalid_archive(format_args!("{}: archive truncated", context())));
        }
        Ok(())
    }

    fn previous_name(&self) -> String {
        self.seen
            .last()
            .map_or_else(|| "at the start of the archive".to_owned(), |e| format!("after entry '{}'", e.name))
    }

    fn next_entry_inner(&mut self) -> io::Result<Option<Entry>> {
        let offset = self.pos;
        let previous = self.previous_name();
        let sig = self.read_u32(&|| format!("zip archive: reading a signature {previous}"))?;
        match sig {
            LOCAL_SIG => {}
            CENTRAL_SIG | ZIP64_EOCD_SIG | EOCD_SIG => {
                self.state = ReadState::AtCentral { cd_start: offset, sig };
                return Ok(None);
            }
            other => {
                return Err(invalid_archive(format_args!(
                    "unexpected signature 0x{other:08x} at offset {offset} {previous}"
                )));
            }
        }
        let context = || format!("zip archive: reading the local header at offset {offset}");
        let fixed = self.read_vec(LOCAL_FIXED, &context)?;
        let flags = le16(&fixed, 2);
        let method = le16(&fixed, 4);
        let crc = le32(&fixed, 10);
        let csize32 = le32(&fixed, 14);
        let usize32 = le32(&fixed, 18);
        let name_len = usize::from(le16(&fixed, 22));
        let extra_len = usize::from(le16(&fixed, 24));
        let raw_name = self.read_vec(name_len, &context)?;
        let name = String::from_utf8(raw_name).map_err(|e| {
            invalid_archive(format_args!(
                "entry name at offset {offset} is not UTF-8: '{}'",
                String::from_utf8_lossy(e.as_bytes())
            ))
        })?;
        let extra = self.read_vec(extra_len, &|| entry_context(&name, "reading the local header"))?;
        if flags & FLAG_ENCRYPTED != 0 {
            return Err(invalid_data(&name, "encrypted entries are not supported"));
        }
        if method != 0 {
            return Err(invalid_data(
                &name,
                format_args!("compression method {method} is not supported (only 0, stored)"),
            ));
        }
        let zip64 = find_zip64(&name, &extra)?;
        let streamed = flags & FLAG_DESCRIPTOR != 0;
        let (size, kind) = if streamed {
            (0, EntryKind::Streamed)
        } else {
            let sizes = resolve_zip64(&name, &[usize32, csize32], zip64.as_deref())?;
            if sizes[0] != sizes[1] {
                return Err(invalid_data(
                    &name,
                    format_args!("compressed size {} differs from size {} in a stored entry", sizes[1], sizes[0]),
                ));
            }
            (sizes[0], EntryKind::Whole)
        };
        let entry = Entry { name: name.clone(), kind, size: (!streamed).then_some(size) };
        self.state =
            ReadState::InEntry(Current { name, offset, streamed, zip64_descriptor: zip64.is_some(), size, crc });
        Ok(Some(entry))
    }

    /// Copies a whole entry's data to `out` in chunks and verifies its CRC-32.
    fn read_whole(&mut self, cur: &Current, out: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<(u64, u32)> {
        let mut buf = std::mem::take(&mut self.chunk);
        let want = usize::try_from(cur.size).unwrap_or(CHUNK).min(CHUNK);
        if buf.len() < want {
            buf.resize(want, 0);
        }
        let mut hasher = crc32fast::Hasher::new();
        let mut remaining = cur.size;
        let mut result = Ok(());
        while remaining > 0 {
            let n = usize::try_from(remaining).unwrap_or(CHUNK).min(CHUNK);
            let piece = &mut buf[..n];
            if let Err(e) = self.inner.read_exact(piece) {
                result = Err(read_context(e, &entry_context(&cur.name, "reading data")));
                break;
            }
            self.pos += n as u64;
            hasher.update(piece);
            if let Err(e) = out(piece) {
                result = Err(e);
                break;
            }
            remaining -= n as u64;
        }
        self.chunk = buf;
        result?;
        let crc = hasher.finalize();
        check_crc(&cur.name, cur.crc, crc)?;
        Ok((cur.size, crc))
    }

    /// Walks the entry's BSON documents, calling `on_doc` with each; for a streamed entry reads
    /// and checks the data descriptor after them. Returns size and CRC-32.
    fn read_docs(&mut self, cur: &Current, on_doc: &mut dyn FnMut(&[u8]) -> io::Result<()>) -> io::Result<(u64, u32)> {
        let mut doc = std::mem::take(&mut self.doc);
        let result = self.read_docs_with(cur, on_doc, &mut doc);
        self.doc = doc;
        result
    }

    fn read_docs_with(
        &mut self,
        cur: &Current,
        on_doc: &mut dyn FnMut(&[u8]) -> io::Result<()>,
        doc: &mut Vec<u8>,
    ) -> io::Result<(u64, u32)> {
        let name = cur.name.as_str();
        let bound = (!cur.streamed).then_some(cur.size);
        let mut hasher = crc32fast::Hasher::new();
        let mut size = 0u64;
        loop {
            if let Some(total) = bound {
                if size == total {
                    break;
                }
                if total - size < 4 {
                    return Err(invalid_data(name, "data ends inside a BSON document"));
                }
            }
            let mut head = [0u8; 4];
            self.fill(&mut head).map_err(|e| read_context(e, &entry_context(name, "reading data")))?;
            if bound.is_none() && u32::from_le_bytes(head) == DESCRIPTOR_SIG {
                break;
            }
            let len = document_length(head).ok_or_else(|| {
                invalid_data(
                    name,
                    format_args!(
                        "invalid BSON document length {} at byte {size} of the data",
                        i32::from_le_bytes(head)
                    ),
                )
            })?;
            if let Some(total) = bound
                && len as u64 > total - size
            {
                return Err(invalid_data(name, "data ends inside a BSON document"));
            }
            doc.clear();
            doc.extend_from_slice(&head);
            doc.resize(len, 0);
            self.fill(&mut doc[4..]).map_err(|e| read_context(e, &entry_context(name, "reading data")))?;
            hasher.update(doc);
            size += len as u64;
            on_doc(doc)?;
        }
        let crc = hasher.finalize();
        if bound.is_some() {
            check_crc(name, cur.crc, crc)?;
            return Ok((size, crc));
        }
        // Data descriptor after its signature: CRC-32 and the two sizes.
        let context = || entry_context(name, "reading the data descriptor");
        let (stored_crc, csize, usize_) = if cur.zip64_descriptor {
            let d = self.read_vec(20, &context)?;
            (le32(&d, 0), le64(&d, 4), le64(&d, 12))
        } else {
            let d = self.read_vec(12, &context)?;
            (le32(&d, 0), u64::from(le32(&d, 4)), u64::from(le32(&d, 8)))
        };
        check_crc(name, stored_crc, crc)?;
        if csize != size || usize_ != size {
            return Err(invalid_data(
                name,
                format_args!("size mismatch: data descriptor says {usize_} (compressed {csize}), data has {size}"),
            ));
        }
        Ok((size, crc))
    }

    /// Checks the central directory, whose first signature `sig` was read at `cd_start`, and
    /// the end records, and that nothing follows them.
    fn check_central(&mut self, cd_start: u64, mut sig: u32) -> io::Result<()> {
        let mut count = 0usize;
        while sig == CENTRAL_SIG {
            let record_offset = self.pos - 4;
            let context = || format!("zip archive: reading central directory record {}", count + 1);
            let fixed = self.read_vec(CENTRAL_FIXED, &context)?;
            let flags = le16(&fixed, 4);
            let method = le16(&fixed, 6);
            let crc = le32(&fixed, 12);
            let csize32 = le32(&fixed, 16);
            let usize32 = le32(&fixed, 20);
            let name_len = usize::from(le16(&fixed, 24));
            let extra_len = usize::from(le16(&fixed, 26));
            let comment_len = u64::from(le16(&fixed, 28));
            let offset32 = le32(&fixed, 38);
            let raw_name = self.read_vec(name_len, &context)?;
            let extra = self.read_vec(extra_len, &context)?;
            self.skip(comment_len, &context)?;
            let name = String::from_utf8_lossy(&raw_name).into_owned();
            let Some(seen) = self.seen.get(count) else {
                return Err(invalid_archive(format_args!(
                    "central directory lists entry '{name}' (record {} at offset {record_offset}) \
                     beyond the {} entries of the archive",
                    count + 1,
                    self.seen.len()
                )));
            };
            if raw_name != seen.name.as_bytes() {
                return Err(invalid_data(
                    &seen.name,
                    format_args!("central directory record {} names '{name}' instead", count + 1),
                ));
            }
            let zip64 = find_zip64(&seen.name, &extra)?;
            let values = resolve_zip64(&seen.name, &[usize32, csize32, offset32], zip64.as_deref())?;
            let streamed = flags & FLAG_DESCRIPTOR != 0;
            if method != 0
                || crc != seen.crc
                || values[0] != seen.size
                || values[1] != seen.size
                || values[2] != seen.offset
                || streamed != seen.streamed
            {
                return Err(invalid_data(
                    &seen.name,
                    format_args!(
                        "central directory record disagrees with the local entry (method {method}, \
                         crc 0x{crc:08x} vs 0x{:08x}, size {} vs {}, offset {} vs {})",
                        seen.crc, values[0], seen.size, values[2], seen.offset
                    ),
                ));
            }
            count += 1;
            sig = self.read_u32(&|| "zip archive: reading the central directory".to_owned())?;
        }
        if count != self.seen.len() {
            return Err(invalid_archive(format_args!(
                "central directory lists {count} entries but the archive has {}",
                self.seen.len()
            )));
        }
        let count = count as u64;
        let cd_size = self.pos - 4 - cd_start;

        let mut zip64_present = false;
        if sig == ZIP64_EOCD_SIG {
            zip64_present = true;
            let z64_offset = self.pos - 4;
            let context = || "zip archive: reading the ZIP64 end of central directory".to_owned();
            let head = self.read_vec(8, &context)?;
            let record_size = le64(&head, 0);
            if record_size < ZIP64_EOCD_FIXED as u64 {
                return Err(invalid_archive("ZIP64 end of central directory record too short"));
            }
            let r = self.read_vec(ZIP64_EOCD_FIXED, &context)?;
            self.skip(record_size - ZIP64_EOCD_FIXED as u64, &context)?;
            let (disk, cd_disk) = (le32(&r, 4), le32(&r, 8));
            let (n_disk, n_total, size, offset) = (le64(&r, 12), le64(&r, 20), le64(&r, 28), le64(&r, 36));
            if disk != 0 || cd_disk != 0 || n_disk != count || n_total != count || size != cd_size || offset != cd_start
            {
                return Err(invalid_archive(format_args!(
                    "ZIP64 end of central directory disagrees with the archive ({n_total} entries, \
                     directory of {size} bytes at {offset}; read {count}, {cd_size} bytes at {cd_start})"
                )));
            }
            let locator_sig = self.read_u32(&context)?;
            let locator = self.read_vec(16, &context)?;
            if locator_sig != ZIP64_LOCATOR_SIG
                || le32(&locator, 0) != 0
                || le64(&locator, 4) != z64_offset
                || le32(&locator, 12) > 1
            {
                return Err(invalid_archive("invalid ZIP64 end of central directory locator"));
            }
            sig = self.read_u32(&context)?;
        }
        if sig != EOCD_SIG {
            return Err(invalid_archive(format_args!(
                "expected the end of central directory record, found signature 0x{sig:08x}"
            )));
        }
        let context = || "zip archive: reading the end of central directory record".to_owned();
        let r = self.read_vec(18, &context)?;
        let ok16 = |v: u16, want: u64| u64::from(v) == want || (zip64_present && v == SENTINEL16);
        let ok32 = |v: u32, want: u64| u64::from(v) == want || (zip64_present && v == SENTINEL32);
        if !ok16(le16(&r, 0), 0)
            || !ok16(le16(&r, 2), 0)
            || !ok16(le16(&r, 4), count)
            || !ok16(le16(&r, 6), count)
            || !ok32(le32(&r, 8), cd_size)
            || !ok32(le32(&r, 12), cd_start)
        {
            return Err(invalid_archive(format_args!(
                "end of central directory record disagrees with the archive (read {count} entries, \
                 directory of {cd_size} bytes at {cd_start})"
            )));
        }
        self.skip(u64::from(le16(&r, 16)), &context)?;
        loop {
            match self.inner.fill_buf() {
                Ok([]) => return Ok(()),
                Ok(rest) => {
                    return Err(invalid_archive(format_args!(
                        "trailing data after the end of central directory record (at least {} bytes)",
                        rest.len()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_context(e, "zip archive: after the end record")),
            }
        }
    }
}

fn check_crc(name: &str, stored: u32, computed: u32) -> io::Result<()> {
    if stored == computed {
        Ok(())
    } else {
        Err(invalid_data(name, format_args!("CRC-32 mismatch (stored 0x{stored:08x}, computed 0x{computed:08x})")))
    }
}

fn failed() -> io::Error {
    io::Error::other("zip reader: unusable after an earlier error")
}

// ------------------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A fake BSON document: length, `body_len` bytes derived from `seed`, NUL.
    fn fake_doc(seed: usize, body_len: usize) -> Vec<u8> {
        let len = 4 + body_len + 1;
        let mut d = Vec::with_capacity(len);
        d.extend_from_slice(&i32::try_from(len).expect("doc length").to_le_bytes());
        d.extend((0..body_len).map(|i| (seed.wrapping_mul(31).wrapping_add(i * 7) % 251) as u8));
        d.push(0);
        d
    }

    struct Expected {
        name: String,
        data: Vec<u8>,
        docs: Vec<Vec<u8>>,
        streamed: bool,
    }

    /// Entries for the round trips: whole and streamed, empty ones, a document over 1 MiB, data
    /// looking like descriptor signatures inside documents, a non-ASCII name.
    fn sample() -> Vec<Expected> {
        let mut out = Vec::new();
        let whole = |name: &str, data: &[u8]| Expected {
            name: name.to_owned(),
            data: data.to_vec(),
            docs: Vec::new(),
            streamed: false,
        };
        let streamed = |name: &str, docs: Vec<Vec<u8>>| Expected {
            name: name.to_owned(),
            data: docs.concat(),
            docs,
            streamed: true,
        };
        out.push(whole(
            "db1/users.metadata.json",
            br#"{"indexes":[{"v":2,"key":{"_id":1},"name":"_id_"}],"uuid":"x"}"#,
        ));
        out.push(streamed("db1/users.bson", (0..200).map(|i| fake_doc(i, i % 97)).collect()));
        out.push(whole("db1/empty.metadata.json", b""));
        out.push(streamed("db1/empty.bson", Vec::new()));
        let mut tricky = fake_doc(1, 40);
        tricky[10..14].copy_from_slice(&DESCRIPTOR_SIG.to_le_bytes());
        tricky[20..24].copy_from_slice(&LOCAL_SIG.to_le_bytes());
        out.push(streamed("db2/big.bson", vec![fake_doc(7, 3), fake_doc(8, 1_500_000), tricky, fake_doc(9, 0)]));
        out.push(streamed("db2/ünïcødé.bson", (0..3).map(|i| fake_doc(i, 10)).collect()));
        out.push(whole("db2/ünïcødé.metadata.json", "{\"name\":\"ünïcødé\"}".as_bytes()));
        out
    }

    /// Writes `entries`, streamed data in awkward 7-byte pieces (and 1 MiB pieces for big data).
    fn write_archive<W: Write>(mut w: ZipStreamWriter<W>, entries: &[Expected]) -> W {
        for e in entries {
            if e.streamed {
                w.start_stream(&e.name).expect("start_stream");
                let piece = if e.data.len() > 100_000 { 1 << 20 } else { 7 };
                for chunk in e.data.chunks(piece) {
                    w.write_stream(chunk).expect("write_stream");
                }
                let (size, crc) = w.finish_stream().expect("finish_stream");
                assert_eq!(size, e.data.len() as u64);
                assert_eq!(crc, crc32fast::hash(&e.data));
            } else {
                w.add_whole(&e.name, &e.data).expect("add_whole");
            }
        }
        let before = w.bytes_written();
        let out = w.finish().expect("finish");
        assert!(before > 0);
        out
    }

    /// A reader handing out few bytes at a time, like a pipe.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.step = self.step % 13 + 1;
            let n = self.step.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Reads every entry: with read_entry (even indices) or read_documents (odd streamed ones).
    /// An entry read back: header, data, documents (if read with read_documents).
    type ReadEntry = (Entry, Vec<u8>, Vec<Vec<u8>>);

    fn read_all(bytes: &[u8]) -> io::Result<Vec<ReadEntry>> {
        let mut r = ZipStreamReader::new(bytes);
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(entry) = r.next_entry()? {
            let mut data = Vec::new();
            let mut docs = Vec::new();
            let size = if i % 2 == 1 && entry.kind == EntryKind::Streamed {
                r.read_documents(&mut |d| {
                    docs.push(d.to_vec());
                    data.extend_from_slice(d);
                    Ok(())
                })?
            } else {
                r.read_entry(&mut |c| {
                    assert!(c.len() <= CHUNK || c.len() <= MAX_BSON_DOCUMENT);
                    data.extend_from_slice(c);
                    Ok(())
                })?
            };
            assert_eq!(size, data.len() as u64);
            out.push((entry, data, docs));
            i += 1;
        }
        r.finish()?;
        Ok(out)
    }

    fn check_read(bytes: &[u8], expected: &[Expected]) {
        let got = read_all(bytes).expect("read back");
        assert_eq!(got.len(), expected.len());
        for (i, ((entry, data, docs), e)) in got.iter().zip(expected).enumerate() {
            assert_eq!(entry.name, e.name);
            assert_eq!(entry.kind, if e.streamed { EntryKind::Streamed } else { EntryKind::Whole });
            assert_eq!(entry.size, (!e.streamed).then_some(e.data.len() as u64));
            assert!(data == &e.data, "data of {}", e.name);
            if i % 2 == 1 && e.streamed {
                assert_eq!(docs, &e.docs);
            }
        }
    }

    #[test]
    fn round_trip() {
        let expected = sample();
        let bytes = write_archive(ZipStreamWriter::new(Vec::new()), &expected);
        check_read(&bytes, &expected);

        // Through a reader returning 1..13 bytes per read.
        let mut r = ZipStreamReader::new(Trickle { data: &bytes, step: 0 });
        let mut n = 0;
        while let Some(e) = r.next_entry().expect("next_entry") {
            let mut data = Vec::new();
            r.read_entry(&mut |c| {
                data.extend_from_slice(c);
                Ok(())
            })
            .expect("read_entry");
            assert!(data == expected[n].data, "{}", e.name);
            n += 1;
        }
        r.finish().expect("finish");
        assert_eq!(n, expected.len());

        // Skipping entries (still verified) and finishing early.
        let mut r = ZipStreamReader::new(&bytes[..]);
        assert!(r.next_entry().expect("first").is_some());
        assert!(r.next_entry().expect("second").is_some());
        r.finish().expect("finish after skipping");

        // Whole entries of BSON documents can be read as documents too.
        let docs: Vec<Vec<u8>> = (0..5).map(|i| fake_doc(i, i)).collect();
        let mut w = ZipStreamWriter::new(Vec::new());
        w.add_whole("d/whole.bson", &docs.concat()).expect("add");
        let bytes = w.finish().expect("finish");
        let mut r = ZipStreamReader::new(&bytes[..]);
        r.next_entry().expect("entry");
        let mut got = Vec::new();
        r.read_documents(&mut |d| {
            got.push(d.to_vec());
            Ok(())
        })
        .expect("documents");
        assert_eq!(got, docs);
        assert!(r.next_entry().expect("end").is_none());
        r.finish().expect("finish");
    }

    #[test]
    fn empty_archive() {
        let bytes = ZipStreamWriter::new(Vec::new()).finish().expect("finish");
        assert_eq!(bytes.len(), 22);
        let mut r = ZipStreamReader::new(&bytes[..]);
        assert!(r.next_entry().expect("next").is_none());
        r.finish().expect("finish");
        assert!(ZipStreamReader::new(&b""[..]).finish().is_err());
    }

    struct Scratch(PathBuf);
    impl Scratch {
        fn new(tag: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("zipstream-{}-{tag}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// Runs a command; `None` if the program is not installed.
    fn run(cmd: &mut Command) -> Option<std::process::Output> {
        match cmd.output() {
            Ok(out) => Some(out),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => panic!("running {cmd:?}: {e}"),
        }
    }

    fn assert_extracted(dir: &Path, expected: &[Expected], tool: &str) {
        for e in expected {
            let path = dir.join(&e.name);
            let data = fs::read(&path).unwrap_or_else(|err| panic!("{tool}: {}: {err}", path.display()));
            assert!(data == e.data, "{tool}: content of {}", e.name);
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = fs::metadata(&path).expect("metadata").permissions().mode();
                assert_eq!(mode & 0o444, 0o444, "{tool}: {} mode {mode:o}", e.name);
            }
        }
    }

    /// Writes the sample with the given ZIP64 thresholds and has unzip, Python and our reader
    /// check and extract it.
    fn external_tools_accept(tag: &str, zip64_limit: u64, count_limit: u64) {
        let expected = sample();
        let bytes = write_archive(ZipStreamWriter::with_limits(Vec::new(), zip64_limit, count_limit), &expected);
        check_read(&bytes, &expected);
        let scratch = Scratch::new(tag);
        let file = scratch.0.join("backup.zip");
        fs::write(&file, &bytes).expect("write zip");

        let unzip = "/usr/bin/unzip";
        if let Some(out) = run(Command::new(unzip).arg("-t").arg(&file).env("LC_ALL", "C.UTF-8")) {
            assert!(
                out.status.success(),
                "unzip -t: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            let dir = scratch.0.join("unzip");
            let out = run(Command::new(unzip).arg("-q").arg("-d").arg(&dir).arg(&file).env("LC_ALL", "C.UTF-8"))
                .expect("unzip");
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "unzip -d: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_extracted(&dir, &expected, "unzip");
        } else {
            eprintln!("{unzip} not installed, skipping the unzip check");
        }

        let test_zip = "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); z.testzip() is None or sys.exit(1)";
        if let Some(out) = run(Command::new("python3").args(["-c", test_zip]).arg(&file)) {
            assert!(out.status.success(), "python testzip: {}", String::from_utf8_lossy(&out.stderr));
            let dir = scratch.0.join("python");
            let extract = "import zipfile,sys\nz=zipfile.ZipFile(sys.argv[1])\n\
                           assert all(i.file_size == i.compress_size for i in z.infolist())\n\
                           z.extractall(sys.argv[2])";
            let out = run(Command::new("python3").args(["-c", extract]).arg(&file).arg(&dir)).expect("python3");
            assert!(out.status.success(), "python extractall: {}", String::from_utf8_lossy(&out.stderr));
            assert_extracted(&dir, &expected, "python");
        } else {
            eprintln!("python3 not installed, skipping the zipfile check");
        }
    }

    #[test]
    fn unzip_and_python_accept() {
        external_tools_accept("plain", ZIP64_LIMIT, COUNT_LIMIT);
    }

    #[test]
    fn unzip_and_python_accept_forced_zip64() {
        // Every size, offset and count in ZIP64 form, plus the ZIP64 end records.
        external_tools_accept("zip64-all", 0, 0);
    }

    #[test]
    fn unzip_and_python_accept_mixed_zip64() {
        // Some entries with ZIP64 sizes, later ones with ZIP64 offsets, 16-bit count.
        external_tools_accept("zip64-mixed", 200, COUNT_LIMIT);
        // Only the entry count over the limit.
        external_tools_accept("zip64-count", ZIP64_LIMIT, 3);
    }

    fn expect_invalid(result: io::Result<impl fmt::Debug>, needles: &[&str]) {
        let err = result.expect_err("expected an error");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        let msg = err.to_string();
        for n in needles {
            assert!(msg.contains(n), "'{msg}' lacks '{n}'");
        }
    }

    fn find(hay: &[u8], needle: &[u8]) -> usize {
        hay.windows(needle.len()).position(|w| w == needle).expect("needle")
    }

    #[test]
    fn flipped_byte_fails_crc() {
        let expected = sample();
        let bytes = write_archive(ZipStreamWriter::new(Vec::new()), &expected);

        // Inside a document body of a streamed entry.
        let doc = fake_doc(5, 5);
        let at = find(&bytes, &fake_doc(4, 4).into_iter().chain(doc.iter().copied()).collect::<Vec<_>>());
        let mut bad = bytes.clone();
        bad[at + 9 + 6] ^= 0x40;
        expect_invalid(read_all(&bad), &["CRC-32", "db1/users.bson"]);
        let mut r = ZipStreamReader::new(&bad[..]);
        r.next_entry().expect("first");
        r.read_entry(&mut |_| Ok(())).expect("first entry intact");
        r.next_entry().expect("second");
        expect_invalid(r.read_documents(&mut |_| Ok(())), &["CRC-32", "db1/users.bson"]);
        assert!(r.next_entry().is_err(), "reader must stay failed");

        // Inside a whole entry.
        let at = find(&bytes, b"\"indexes\"");
        let mut bad = bytes.clone();
        bad[at + 2] ^= 0x01;
        expect_invalid(read_all(&bad), &["CRC-32", "db1/users.metadata.json"]);

        // A document length, or the descriptor's sizes.
        let mut bad = bytes.clone();
        let at = find(&bytes, &fake_doc(8, 1_500_000)[..8]);
        bad[at + 3] = 0x7f;
        expect_invalid(read_all(&bad), &["invalid BSON document length", "db2/big.bson"]);
    }

    #[test]
    fn truncation_and_trailing_garbage_fail() {
        let expected: Vec<Expected> = sample().into_iter().filter(|e| e.data.len() < 10_000).collect();
        for (limit, count) in [(ZIP64_LIMIT, COUNT_LIMIT), (0, 0)] {
            let bytes = write_archive(ZipStreamWriter::with_limits(Vec::new(), limit, count), &expected);
            check_read(&bytes, &expected);
            for cut in 0..bytes.len() {
                let result = read_all(&bytes[..cut]);
                let err = result.expect_err(&format!("truncated at {cut} of {} accepted", bytes.len()));
                assert_eq!(err.kind(), io::ErrorKind::InvalidData, "cut {cut}: {err}");
            }
            let mut longer = bytes.clone();
            longer.push(0);
            expect_invalid(read_all(&longer), &["trailing data"]);
        }
    }

    #[test]
    fn writer_misuse_is_refused() {
        let mut w = ZipStreamWriter::new(Vec::new());
        assert!(w.write_stream(b"x").is_err());
        assert!(w.finish_stream().is_err());
        assert!(w.add_whole("", b"x").is_err());
        w.start_stream("d/c.bson").expect("start");
        assert!(w.add_whole("d/c.metadata.json", b"{}").is_err());
        assert!(w.start_stream("d/other.bson").is_err());
        let doc = fake_doc(1, 20);
        w.write_stream(&doc[..10]).expect("partial document");
        let err = w.finish_stream().expect_err("ends inside a document");
        assert!(err.to_string().contains("d/c.bson"), "{err}");
        w.write_stream(&doc[10..]).expect("rest of the document");
        // 0x08074b50 as a length: never a document.
        let err = w.write_stream(&DESCRIPTOR_SIG.to_le_bytes()).expect_err("bad length");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(w.write_stream(&[4, 0, 0, 0]).is_err(), "length 4 is too short");
        w.finish_stream().expect("finish_stream");
        let bytes = w.finish().expect("finish");
        let got = read_all(&bytes).expect("read");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, doc);

        let mut w = ZipStreamWriter::new(Vec::new());
        w.start_stream("d/open.bson").expect("start");
        assert!(w.finish().is_err());
    }

    #[test]
    fn reader_misuse_and_foreign_input() {
        let mut r = ZipStreamReader::new(&b"not a zip archive at all"[..]);
        expect_invalid(r.next_entry(), &["unexpected signature"]);
        let mut w = ZipStreamWriter::new(Vec::new());
        w.add_whole("a", b"1").expect("add");
        let bytes = w.finish().expect("finish");
        let mut r = ZipStreamReader::new(&bytes[..]);
        assert_eq!(r.read_entry(&mut |_| Ok(())).expect_err("no entry").kind(), io::ErrorKind::InvalidInput);
        r.next_entry().expect("entry");
        r.finish().expect("finish reads the unread entry");
    }
}
