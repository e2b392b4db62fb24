//! A PostgreSQL-aware lexer and statement splitter, as psql splits scripts: semicolons inside
//! strings, quoted identifiers, dollar quotes, comments, parentheses and `BEGIN ATOMIC` bodies do
//! not end a statement; `COPY ... FROM STDIN` is followed by its data up to a `\.` line.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// An unquoted identifier or keyword.
    Word,
    QuotedIdent,
    /// Any string literal: '...', E'...', $tag$...$tag$.
    Literal,
    Number,
    Symbol(char),
    Comment,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    pub kind: TokenKind,
    pub start: usize,
    pub end: usize,
}

/// One statement of a script.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// The statement from its first token through its terminating semicolon (if any).
    pub text: String,
    /// Byte offset of `text` in the script.
    pub offset: usize,
    /// 1-based line of the statement's first token.
    pub line: usize,
    /// Tokens of `text` (offsets relative to `text`), comments included.
    pub tokens: Vec<Token>,
    /// Comments between the previous statement and this one.
    pub leading_comments: Vec<String>,
    /// The rows of `COPY ... FROM STDIN`, without the terminating `\.` line.
    pub copy_data: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Maps byte offsets to 1-based line numbers.
#[derive(Debug)]
pub struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub fn new(text: &str) -> Lines {
        let mut starts = vec![0];
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\n' => starts.push(i + 1),
                b'\r' if bytes.get(i + 1) != Some(&b'\n') => starts.push(i + 1),
                _ => {}
            }
            i += 1;
        }
        Lines { starts }
    }

    pub fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

struct Lexer<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn is_ident_char(c: u8) -> bool {
    is_ident_start(c) || c.is_ascii_digit() || c == b'$'
}

impl<'a> Lexer<'a> {
    fn error(&self, at: usize, message: &str) -> SplitError {
        SplitError { line: Lines::new(self.text).line_of(at), message: message.to_owned() }
    }

    fn next(&mut self) -> Option<Result<Token, SplitError>> {
        let b = self.bytes;
        while self.pos < b.len() && b[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return None;
        }
        let start = self.pos;
        let c = b[start];
        let next = b.get(start + 1).copied();
        let token = |kind, end| Some(Ok(Token { kind, start, end }));
        match c {
            b'-' if next == Some(b'-') => {
                let end = self.text[start..].find(['\n', '\r']).map(|i| start + i).unwrap_or(b.len());
                self.pos = end;
                token(TokenKind::Comment, end)
            }
            b'/' if next == Some(b'*') => {
                let mut depth = 0usize;
                let mut i = start;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            self.pos = i;
                            return token(TokenKind::Comment, i);
                        }
                    } else {
                        i += 1;
                    }
                }
                Some(Err(self.error(start, "unterminated /* comment")))
            }
            b'\'' => self.quoted(start, start, b'\'', false, TokenKind::Literal),
            b'"' => self.quoted(start, start, b'"', false, TokenKind::QuotedIdent),
            b'$' if next.is_some_and(|n| n == b'$' || is_ident_start(n)) => {
                // A dollar quote: $$ or $tag$ (a tag cannot start with a digit).
                let mut i = start + 1;
                while i < b.len() && b[i] != b'$' && is_ident_char(b[i]) {
                    i += 1;
                }
                if b.get(i) != Some(&b'$') {
                    self.pos = start + 1;
                    return token(TokenKind::Symbol('$'), start + 1);
                }
                let tag = &self.text[start..=i];
                match self.text[i + 1..].find(tag) {
                    Some(found) => {
                        let end = i + 1 + found + tag.len();
                        self.pos = end;
                        token(TokenKind::Literal, end)
                    }
                    None => Some(Err(self.error(start, &format!("unterminated dollar-quoted string {tag}")))),
                }
            }
            c if is_ident_start(c) => {
                let mut i = start;
                while i < b.len() && is_ident_char(b[i]) {
                    i += 1;
                }
                // E'...' (backslash escapes), B'...', X'...', N'...', U&'...'.
                let word = &self.text[start..i];
                if b.get(i) == Some(&b'\'') && word.len() == 1 && "eEbBxXnN".contains(word) {
                    let escapes = word.eq_ignore_ascii_case("e");
                    return self.quoted(start, i, b'\'', escapes, TokenKind::Literal);
                }
                if word.eq_ignore_ascii_case("u") && b.get(i) == Some(&b'&') && b.get(i + 1) == Some(&b'\'') {
                    return self.quoted(start, i + 1, b'\'', false, TokenKind::Literal);
                }
                self.pos = i;
                token(TokenKind::Word, i)
            }
            c if c.is_ascii_digit() => {
                let mut i = start;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.' || b[i] == b'_') {
                    i += 1;
                }
                self.pos = i;
                token(TokenKind::Number, i)
            }
            _ => {
                let ch = self.text[start..].chars().next().unwrap_or('?');
                self.pos = start + ch.len_utf8();
                token(TokenKind::Symbol(ch), self.pos)
            }
        }
    }

    /// A quoted string or identifier starting at `open` (the quote), token starting at `start`.
    fn quoted(
        &mut self,
        start: usize,
        open: usize,
        quote: u8,
        escapes: bool,
        kind: TokenKind,
    ) -> Option<Result<Token, SplitError>> {
        let b = self.bytes;
        let mut i = open + 1;
        while i < b.len() {
            if escapes && b[i] == b'\\' {
                i += 2;
                continue;
            }
            if b[i] == quote {
                if b.get(i + 1) == Some(&quote) {
                    i += 2;
                    continue;
                }
                self.pos = i + 1;
                return Some(Ok(Token { kind, start, end: i + 1 }));
            }
            i += 1;
        }
        let what = if quote == b'"' { "quoted identifier" } else { "string" };
        Some(Err(self.error(start, &format!("unterminated {what}"))))
    }
}

/// Upper-cased words of a token list (quoted identifiers keep their text), comments skipped.
pub fn words(text: &str, tokens: &[Token]) -> Vec<String> {
    tokens
        .iter()
        .filter_map(|t| match t.kind {
            TokenKind::Word => Some(text[t.start..t.end].to_ascii_uppercase()),
            TokenKind::QuotedIdent => Some(unquote(&text[t.start..t.end])),
            _ => None,
        })
        .collect()
}

fn unquote(quoted: &str) -> String {
    quoted.trim_matches('"').replace("\"\"", "\"")
}

/// Splits a script into statements.
pub fn split(script: &str) -> Result<Vec<Statement>, SplitError> {
    let lines = Lines::new(script);
    let mut lexer = Lexer { text: script, bytes: script.as_bytes(), pos: 0 };
    let mut statements = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut paren = 0i32;
    let mut atomic = 0i32;
    let mut words_so_far: Vec<String> = Vec::new();

    let finish = |tokens: &mut Vec<Token>, comments: &mut Vec<String>, end: usize, statements: &mut Vec<Statement>| {
        let first = tokens.iter().position(|t| t.kind != TokenKind::Comment);
        let Some(first) = first else {
            tokens.clear();
            return;
        };
        let start = tokens[first].start;
        let toks: Vec<Token> = tokens[first..]
            .iter()
            .map(|t| Token { kind: t.kind, start: t.start - start, end: t.end - start })
            .collect();
        statements.push(Statement {
            text: script[start..end].to_owned(),
            offset: start,
            line: lines.line_of(start),
            tokens: toks,
            leading_comments: std::mem::take(comments),
            copy_data: None,
        });
        tokens.clear();
    };

    while let Some(token) = lexer.next() {
        let token = token?;
        if token.kind == TokenKind::Comment && current.iter().all(|t| t.kind == TokenKind::Comment) {
            comments.push(script[token.start..token.end].to_owned());
            continue;
        }
        current.push(token);
        match token.kind {
            TokenKind::Symbol('(') => paren += 1,
            TokenKind::Symbol(')') => paren -= 1,
            TokenKind::Word => {
                let word = script[token.start..token.end].to_ascii_uppercase();
                let in_routine = words_so_far.first().is_some_and(|w| w == "CREATE")
                    && words_so_far.iter().any(|w| w == "FUNCTION" || w == "PROCEDURE");
                let opens_body = word == "ATOMIC" && words_so_far.last().is_some_and(|w| w == "BEGIN") && in_routine;
                if opens_body || (atomic > 0 && (word == "CASE" || word == "BEGIN")) {
                    atomic += 1;
                } else if atomic > 0 && word == "END" {
                    atomic -= 1;
                }
                words_so_far.push(word);
            }
            TokenKind::Symbol(';') if paren <= 0 && atomic <= 0 => {
                finish(&mut current, &mut comments, token.end, &mut statements);
                let is_copy_in = words_so_far.first().is_some_and(|w| w == "COPY")
                    && words_so_far.windows(2).any(|w| w[0] == "FROM" && w[1] == "STDIN");
                words_so_far.clear();
                paren = 0;
                if is_copy_in {
                    let data_start = match script[token.end..].find('\n') {
                        Some(i) => token.end + i + 1,
                        None => script.len(),
                    };
                    let mut offset = data_start;
                    let mut data = String::new();
                    let mut terminated = false;
                    for line in script[data_start..].split_inclusive('\n') {
                        offset += line.len();
                        if line.trim_end_matches(['\n', '\r']) == "\\." {
                            terminated = true;
                            break;
                        }
                        data.push_str(line);
                    }
                    if !terminated {
                        return Err(SplitError {
                            line: lines.line_of(token.start),
                            message: "COPY ... FROM STDIN data is not terminated by a line holding \\.".into(),
                        });
                    }
                    if let Some(last) = statements.last_mut() {
                        last.copy_data = Some(data);
                    }
                    lexer.pos = offset;
                }
            }
            _ => {}
        }
    }
    let end = script.len();
    finish(&mut current, &mut comments, end, &mut statements);
    Ok(statements)
}

/// Why `statement` cannot run inside a transaction block, if it cannot.
pub fn non_transactional(statement: &Statement) -> Option<&'static str> {
    let w = words(&statement.text, &statement.tokens);
    let w: Vec<&str> = w.iter().map(String::as_str).collect();
    let has = |word: &str| w.contains(&word);
    match w.as_slice() {
        ["CREATE", "INDEX", "CONCURRENTLY", ..] | ["CREATE", "UNIQUE", "INDEX", "CONCURRENTLY", ..] => {
            Some("CREATE INDEX CONCURRENTLY")
        }
        ["DROP", "INDEX", "CONCURRENTLY", ..] => Some("DROP INDEX CONCURRENTLY"),
        ["REINDEX", ..] if has("CONCURRENTLY") => Some("REINDEX CONCURRENTLY"),
        ["VACUUM", ..] => Some("VACUUM"),
        ["CREATE", "DATABASE", ..] => Some("CREATE DATABASE"),
        ["DROP", "DATABASE", ..] => Some("DROP DATABASE"),
        ["CREATE", "TABLESPACE", ..] => Some("CREATE TABLESPACE"),
        ["DROP", "TABLESPACE", ..] => Some("DROP TABLESPACE"),
        ["ALTER", "SYSTEM", ..] => Some("ALTER SYSTEM"),
        ["ALTER", "DATABASE", ..] if has("TABLESPACE") => Some("ALTER DATABASE ... SET TABLESPACE"),
        ["CLUSTER"] => Some("CLUSTER without a table"),
        ["CREATE", "SUBSCRIPTION", ..] | ["DROP", "SUBSCRIPTION", ..] => Some("CREATE/DROP SUBSCRIPTION"),
        ["ALTER", "SUBSCRIPTION", ..] if has("REFRESH") => Some("ALTER SUBSCRIPTION ... REFRESH"),
        _ => None,
    }
}

/// Whether `statement` controls transactions itself (BEGIN, COMMIT, ...), which a migration run
/// inside a transaction must not do.
pub fn transaction_control(statement: &Statement) -> Option<&'static str> {
    let w = words(&statement.text, &statement.tokens);
    match w.first().map(String::as_str) {
        Some("BEGIN") if w.len() <= 3 => Some("BEGIN"),
        Some("START") if w.get(1).is_some_and(|x| x == "TRANSACTION") => Some("START TRANSACTION"),
        Some("COMMIT" | "END") => Some("COMMIT"),
        Some("ROLLBACK" | "ABORT") if !w.iter().any(|x| x == "PREPARED") => Some("ROLLBACK"),
        _ => None,
    }
}

pub use datastores::pgadmin::{quote_ident, quote_literal};

/// The index a `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] [schema.]table`
/// builds: `(schema of the table when qualified, index name)`, names as PostgreSQL stores them.
/// `None` for other statements and for unnamed indexes.
pub fn concurrent_index(statement: &Statement) -> Option<(Option<String>, String)> {
    let text = &statement.text;
    let items: Vec<(TokenKind, &str)> = statement
        .tokens
        .iter()
        .filter(|t| t.kind != TokenKind::Comment)
        .map(|t| (t.kind, &text[t.start..t.end]))
        .collect();
    let word =
        |i: usize, w: &str| items.get(i).is_some_and(|(k, t)| *k == TokenKind::Word && t.eq_ignore_ascii_case(w));
    let ident = |i: usize| -> Option<String> {
        match items.get(i)? {
            (TokenKind::Word, t) => Some(t.to_ascii_lowercase()),
            (TokenKind::QuotedIdent, t) => Some(unquote(t)),
            _ => None,
        }
    };
    let mut i = 0;
    if !word(i, "CREATE") {
        return None;
    }
    i += 1;
    if word(i, "UNIQUE") {
        i += 1;
    }
    if !(word(i, "INDEX") && word(i + 1, "CONCURRENTLY")) {
        return None;
    }
    i += 2;
    if word(i, "IF") && word(i + 1, "NOT") && word(i + 2, "EXISTS") {
        i += 3;
    }
    if word(i, "ON") {
        return None; // No name: PostgreSQL chooses one.
    }
    let name = ident(i)?;
    i += 1;
    if !word(i, "ON") {
        return None;
    }
    i += 1;
    if word(i, "ONLY") {
        i += 1;
    }
    let first = ident(i)?;
    let schema = matches!(items.get(i + 1), Some((TokenKind::Symbol('.'), _))).then_some(first);
    Some((schema, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<String> {
        split(sql).unwrap().into_iter().map(|s| s.text).collect()
    }

    #[test]
    fn semicolons_inside_quotes_comments_and_bodies() {
        let sql = "CREATE TABLE t (a text DEFAULT ';');\n\
                   -- a comment; with semicolon\n\
                   INSERT INTO t VALUES ('it''s; fine'), (E'back\\'slash;');\n\
                   /* block; /* nested; */ still */ SELECT \"odd;name\" FROM t;\n\
                   CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n\
                   DO $$ BEGIN PERFORM 1; END $$;\n\
                   SELECT 1";
        let got = texts(sql);
        assert_eq!(got.len(), 6, "{got:#?}");
        assert_eq!(got[0], "CREATE TABLE t (a text DEFAULT ';');");
        assert_eq!(got[1], "INSERT INTO t VALUES ('it''s; fine'), (E'back\\'slash;');");
        assert_eq!(got[2], "SELECT \"odd;name\" FROM t;");
        assert!(got[3].ends_with("LANGUAGE sql;"));
        assert_eq!(got[4], "DO $$ BEGIN PERFORM 1; END $$;");
        assert_eq!(got[5], "SELECT 1");
    }

    #[test]
    fn begin_atomic_bodies_stay_whole() {
        let sql = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC\n  SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END;\n  SELECT 2;\nEND;\nSELECT 3;";
        let got = texts(sql);
        assert_eq!(got.len(), 2, "{got:#?}");
        assert!(got[0].ends_with("END;"));
    }

    #[test]
    fn lines_and_leading_comments() {
        let sql = "-- header\n\nCREATE TABLE a (id int);\r\n-- pg-migrate:lint-ignore PM001\nCREATE INDEX i ON a (id);";
        let statements = split(sql).unwrap();
        assert_eq!(statements[0].line, 3);
        assert_eq!(statements[0].leading_comments, ["-- header"]);
        assert_eq!(statements[1].line, 5);
        assert_eq!(statements[1].leading_comments, ["-- pg-migrate:lint-ignore PM001"]);
    }

    #[test]
    fn copy_from_stdin_carries_its_data() {
        let sql = "COPY t (a, b) FROM stdin;\n1\tx;y\n2\tz\n\\.\nSELECT 1;";
        let statements = split(sql).unwrap();
        assert_eq!(statements.len(), 2);
        assert_eq!(statements[0].copy_data.as_deref(), Some("1\tx;y\n2\tz\n"));
        assert_eq!(statements[1].text, "SELECT 1;");
        assert!(split("COPY t FROM STDIN;\n1\n").is_err());
    }

    #[test]
    fn unterminated_things_name_their_line() {
        assert_eq!(split("SELECT 1;\nSELECT 'oops;\n").unwrap_err().line, 2);
        assert_eq!(split("\n\nSELECT $x$ never").unwrap_err().line, 3);
        assert_eq!(split("/* open").unwrap_err().line, 1);
    }

    #[test]
    fn dollar_parameters_are_not_quotes() {
        assert_eq!(texts("PREPARE p AS SELECT $1; EXECUTE p(1);").len(), 2);
    }

    #[test]
    fn concurrent_index_names() {
        let first = |sql: &str| split(sql).unwrap().remove(0);
        assert_eq!(
            concurrent_index(&first("create index concurrently Big_Idx on t (a);")),
            Some((None, "big_idx".into()))
        );
        assert_eq!(
            concurrent_index(&first(
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \"Odd\"\"Name\" ON ONLY app.t (a);"
            )),
            Some((Some("app".into()), "Odd\"Name".into()))
        );
        assert_eq!(concurrent_index(&first("CREATE INDEX CONCURRENTLY ON t (a);")), None);
        assert_eq!(concurrent_index(&first("CREATE INDEX i ON t (a);")), None);
    }

    #[test]
    fn non_transactional_statements() {
        let first = |sql: &str| split(sql).unwrap().remove(0);
        assert!(non_transactional(&first("create index concurrently i on t (a);")).is_some());
        assert!(non_transactional(&first("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);")).is_some());
        assert!(non_transactional(&first("VACUUM ANALYZE t;")).is_some());
        assert!(non_transactional(&first("CREATE INDEX i ON t (a);")).is_none());
        assert!(non_transactional(&first("SELECT 'VACUUM';")).is_none());
        assert!(transaction_control(&first("COMMIT;")).is_some());
        assert!(transaction_control(&first("BEGIN;")).is_some());
        assert!(transaction_control(&first("DO $$ BEGIN NULL; END $$;")).is_none());
    }
}
