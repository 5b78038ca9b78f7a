//! Reads the TOML (spec 1.1) of a kvmnet config into a small tree; `config`
//! then checks the tree against its schema.
//!
//! Why not the `toml` crate: kvmnet-ifup runs once per VM start, in a fresh
//! process, and toml with serde was ~145 KB of its 650 KB of code, costing
//! ~0.05 ms of first-touch time per start to read a 5 KB file that is nearly
//! all comments. This reader is the part of TOML a kvmnet config can use,
//! read the way the toml crate reads TOML 1.1 (which in one place is more
//! lenient than the spec: newlines and comments around the `=` of an inline
//! table's key/value), and refuses the rest early:
//! - dotted keys, `[table]` headers, and `[[x]]` headers other than
//!   `[[allow]]`, `[[deny]]` and `[[rule]]`: they can only build tables the
//!   schema has no place for;
//! - floats and date-times: no key takes one.
//!
//! So every text it refuses that TOML accepts would fail the schema anyway,
//! and every text it accepts means what TOML says it means. The `toml` crate
//! stays as the oracle: the `config` fuzz target and the tests parse each
//! input both ways and require the same config or an error from both.
//!
//! Hostile input is bounded: the caller caps the text at 64 KiB, arrays and
//! inline tables nest at most [`MAX_DEPTH`] deep (recursion depth), and a
//! table holds at most [`MAX_KEYS`] keys (its duplicate check is linear).

/// Deepest nesting of arrays and inline tables. A valid config nests 3 deep
/// (`allow = [{ users = ["x"] }]`); the cap keeps recursion bounded.
pub const MAX_DEPTH: usize = 8;

/// Most keys in one table. The largest kvmnet table, the top level, has 16
/// keys, and keys are distinct, so a table with more has an unknown one: the
/// schema would refuse it. Without a cap, 64 KiB of distinct keys made the
/// linear duplicate check take ~0.1 s (found in review).
pub const MAX_KEYS: usize = 64;

/// A value and the line (from 1) it starts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub line: usize,
    pub value: Value,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
    Array(Vec<Item>),
    Table(Table),
    /// A float or date-time, which no kvmnet key takes (only the oracle
    /// produces these; this reader refuses them as it reads them).
    Other(&'static str),
}

impl Value {
    /// What it is, for "expected a string, found …" messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Str(_) => "a string",
            Value::Int(_) => "an integer",
            Value::Bool(_) => "a boolean",
            Value::Array(_) => "an array",
            Value::Table(_) => "a table",
            Value::Other(kind) => kind,
        }
    }
}

/// Keys in the order written (the first unknown key is the one reported).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Table {
    pub entries: Vec<(Key, Item)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub line: usize,
}

impl Table {
    pub fn get(&self, key: &str) -> Option<&Item> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    fn insert(&mut self, key: Key, item: Item) -> Result<(), SyntaxError> {
        if self.entries.len() == MAX_KEYS {
            return Err(SyntaxError::new(
                key.line,
                format!("more than {MAX_KEYS} keys in one table; kvmnet knows 16 at most"),
            ));
        }
        if self.get(&key.name).is_some() {
            return Err(SyntaxError::new(
                key.line,
                format!("duplicate key `{}`", crate::name::printable(&key.name)),
            ));
        }
        self.entries.push((key, item));
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub message: String,
}

impl SyntaxError {
    fn new(line: usize, message: impl Into<String>) -> SyntaxError {
        SyntaxError {
            line,
            message: message.into(),
        }
    }
}

/// The tables `[[NAME]]` may start: the arrays of tables the schema has.
pub const TABLE_ARRAYS: [&str; 3] = ["allow", "deny", "rule"];

/// Parses a whole document into its root table. `[[allow]]` etc. become an
/// array of tables under their key, each table's line that of its header.
pub fn parse(text: &str) -> Result<Table, SyntaxError> {
    let mut r = Reader {
        s: text,
        b: text.as_bytes(),
        pos: 0,
        line: 1,
    };
    // A byte-order mark is allowed at the very start only.
    if text.starts_with('\u{feff}') {
        r.pos = '\u{feff}'.len_utf8();
    }
    let mut root = Table::default();
    // Keys that [[headers]] made (the others cannot be appended to), and
    // where key/value lines go: the root, or the last table of one of them.
    let mut by_header: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    loop {
        r.skip_blank();
        match r.peek() {
            None => return Ok(root),
            Some(b'#') => r.comment()?,
            Some(b'\n' | b'\r') => r.newline()?,
            Some(b'[') => {
                let (name, line) = r.header()?;
                if by_header.contains(&name) {
                    if let Some(Item {
                        value: Value::Array(tables),
                        ..
                    }) = root
                        .entries
                        .iter_mut()
                        .find(|(k, _)| k.name == name)
                        .map(|e| &mut e.1)
                    {
                        tables.push(Item {
                            line,
                            value: Value::Table(Table::default()),
                        });
                    }
                } else {
                    let first = Item {
                        line,
                        value: Value::Table(Table::default()),
                    };
                    root.insert(
                        Key {
                            name: name.clone(),
                            line,
                        },
                        Item {
                            line,
                            value: Value::Array(vec![first]),
                        },
                    )?;
                    by_header.push(name.clone());
                }
                current = Some(name);
                r.line_end()?;
            }
            Some(_) => {
                let (key, item) = r.key_value(0)?;
                let table = match &current {
                    None => &mut root,
                    Some(name) => last_table(&mut root, name),
                };
                table.insert(key, item)?;
                r.line_end()?;
            }
        }
    }
}

/// The table the last `[[name]]` header opened.
fn last_table<'t>(root: &'t mut Table, name: &str) -> &'t mut Table {
    let array = root
        .entries
        .iter_mut()
        .find(|(k, _)| k.name == name)
        .map(|e| &mut e.1.value);
    match array {
        Some(Value::Array(items)) => match items.last_mut().map(|i| &mut i.value) {
            Some(Value::Table(t)) => t,
            _ => unreachable!("a [[header]] array holds tables only"),
        },
        _ => unreachable!("a [[header]] key is an array"),
    }
}

struct Reader<'a> {
    s: &'a str,
    b: &'a [u8],
    pos: usize,
    line: usize,
}

fn is_bare_key_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

/// Characters TOML forbids in comments and strings: controls but tab.
fn is_forbidden_control(c: char) -> bool {
    (c < ' ' && c != '\t') || c == '\u{7f}'
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn at(&self, prefix: &str) -> bool {
        self.b[self.pos..].starts_with(prefix.as_bytes())
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, SyntaxError> {
        Err(SyntaxError::new(self.line, message))
    }

    /// What stands at the current position, for "found …" in messages.
    fn found(&self) -> String {
        match self.s[self.pos..].chars().next() {
            None => "the end of the file".into(),
            Some('\n') => "the end of the line".into(),
            Some(c) => format!("\"{}\"", crate::name::printable(&c.to_string())),
        }
    }

    /// Spaces and tabs.
    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// A newline: LF or CRLF.
    fn newline(&mut self) -> Result<(), SyntaxError> {
        if self.at("\r\n") {
            self.pos += 2;
        } else if self.peek() == Some(b'\n') {
            self.pos += 1;
        } else {
            return self.err("a carriage return must be followed by a newline");
        }
        self.line += 1;
        Ok(())
    }

    /// From `#` to the end of the line, which stays.
    fn comment(&mut self) -> Result<(), SyntaxError> {
        let rest = &self.b[self.pos..];
        let end = first_control(rest).unwrap_or(rest.len());
        match &rest[end..] {
            [] | [b'\n', ..] | [b'\r', b'\n', ..] => {
                self.pos += end;
                Ok(())
            }
            _ => self.err("a comment must not contain control characters"),
        }
    }

    /// After a value or header: blanks, maybe a comment, then a newline or
    /// the end.
    fn line_end(&mut self) -> Result<(), SyntaxError> {
        self.skip_blank();
        if self.peek() == Some(b'#') {
            self.comment()?;
        }
        match self.peek() {
            None => Ok(()),
            Some(b'\n' | b'\r') => self.newline(),
            _ => self.err(format!(
                "expected the end of the line, found {}",
                self.found()
            )),
        }
    }

    /// Blanks, newlines and comments, as allowed inside arrays and inline
    /// tables.
    fn skip_space(&mut self) -> Result<(), SyntaxError> {
        loop {
            self.skip_blank();
            match self.peek() {
                Some(b'#') => self.comment()?,
                Some(b'\n' | b'\r') => self.newline()?,
                _ => return Ok(()),
            }
        }
    }

    /// `[[name]]`; the reader stands on the first `[`.
    fn header(&mut self) -> Result<(String, usize), SyntaxError> {
        let line = self.line;
        if !self.at("[[") {
            return self.err(
                "kvmnet's config has no [table] sections: rules are [[allow]], [[deny]] and [[rule]], with two brackets",
            );
        }
        self.pos += 2;
        self.skip_blank();
        let key = self.key()?;
        self.skip_blank();
        if self.peek() == Some(b'.') {
            return self.err(format!(
                "[[{}.…]]: kvmnet's config has no nested tables",
                crate::name::printable(&key.name)
            ));
        }
        if !self.at("]]") {
            return self.err(format!(
                "expected ]] to end the header, found {}",
                self.found()
            ));
        }
        self.pos += 2;
        if !TABLE_ARRAYS.contains(&key.name.as_str()) {
            return self.err(format!(
                "unknown table [[{}]], expected one of `allow`, `deny`, `rule`",
                crate::name::printable(&key.name)
            ));
        }
        Ok((key.name, line))
    }

    /// A key: bare, "basic" or 'literal'.
    fn key(&mut self) -> Result<Key, SyntaxError> {
        let line = self.line;
        let name = match self.peek() {
            Some(b'"') if !self.at("\"\"\"") => self.basic_string()?,
            Some(b'\'') if !self.at("'''") => self.literal_string()?,
            Some(c) if is_bare_key_byte(c) => {
                let start = self.pos;
                while self.peek().is_some_and(is_bare_key_byte) {
                    self.pos += 1;
                }
                self.s[start..self.pos].to_owned()
            }
            _ => return self.err(format!("expected a key, found {}", self.found())),
        };
        Ok(Key { name, line })
    }

    /// `key = value`; the reader stands on the key. Inside an inline table
    /// (`depth` > 0) newlines and comments may surround the `=`, as the toml
    /// crate reads TOML 1.1.
    fn key_value(&mut self, depth: usize) -> Result<(Key, Item), SyntaxError> {
        let key = self.key()?;
        self.gap(depth)?;
        match self.peek() {
            Some(b'=') => self.pos += 1,
            Some(b'.') => {
                return self.err(format!(
                    "{}.…: kvmnet's config has no dotted keys",
                    crate::name::printable(&key.name)
                ))
            }
            _ => {
                return self.err(format!(
                    "expected = after the key `{}`, found {}",
                    crate::name::printable(&key.name),
                    self.found()
                ))
            }
        }
        self.gap(depth)?;
        let item = self.value(depth)?;
        Ok((key, item))
    }

    /// Around the `=` of a key/value: blanks at the top level, blanks,
    /// newlines and comments inside an inline table.
    fn gap(&mut self, depth: usize) -> Result<(), SyntaxError> {
        if depth == 0 {
            self.skip_blank();
            Ok(())
        } else {
            self.skip_space()
        }
    }

    fn value(&mut self, depth: usize) -> Result<Item, SyntaxError> {
        let line = self.line;
        let value = match self.peek() {
            Some(b'"') if self.at("\"\"\"") => Value::Str(self.multi_line(b'"')?),
            Some(b'"') => Value::Str(self.basic_string()?),
            Some(b'\'') if self.at("'''") => Value::Str(self.multi_line(b'\'')?),
            Some(b'\'') => Value::Str(self.literal_string()?),
            Some(b'[') => Value::Array(self.array(depth + 1)?),
            Some(b'{') => Value::Table(self.inline_table(depth + 1)?),
            Some(b't' | b'f') => {
                let word = self.word();
                match word {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    _ => return self.err(format!("expected a value, found {word:?}")),
                }
            }
            Some(b'0'..=b'9' | b'+' | b'-' | b'i' | b'n') => {
                let word = self.word();
                match integer(word) {
                    Some(n) => Value::Int(n),
                    None => {
                        return self.err(format!(
                            "{word:?} is not an integer (no kvmnet key takes a float or a date)"
                        ))
                    }
                }
            }
            _ => return self.err(format!("expected a value, found {}", self.found())),
        };
        Ok(Item { line, value })
    }

    /// The run of characters a number, date, boolean, inf or nan is made of.
    fn word(&mut self) -> &'a str {
        let (s, start) = (self.s, self.pos);
        while self.peek().is_some_and(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'_' | b'+' | b'-' | b'.' | b':')
        }) {
            self.pos += 1;
        }
        &s[start..self.pos]
    }

    fn array(&mut self, depth: usize) -> Result<Vec<Item>, SyntaxError> {
        let mut items = Vec::new();
        self.sequence(depth, b']', "the array", |r| {
            items.push(r.value(depth)?);
            Ok(())
        })?;
        Ok(items)
    }

    /// `{ k = v, … }`: as TOML 1.1 allows, over several lines and with a
    /// trailing comma.
    fn inline_table(&mut self, depth: usize) -> Result<Table, SyntaxError> {
        let mut table = Table::default();
        self.sequence(depth, b'}', "the inline table", |r| {
            let (key, item) = r.key_value(depth)?;
            table.insert(key, item)
        })?;
        Ok(table)
    }

    /// The body of an array or inline table: elements read by `element`,
    /// separated by commas (a trailing one allowed), with blanks, newlines
    /// and comments between them, up to `close`. The reader stands on the
    /// opening bracket.
    fn sequence(
        &mut self,
        depth: usize,
        close: u8,
        what: &str,
        mut element: impl FnMut(&mut Self) -> Result<(), SyntaxError>,
    ) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            return self.err("arrays and tables nest too deeply");
        }
        self.pos += 1;
        loop {
            self.skip_space()?;
            if self.peek() == Some(close) {
                self.pos += 1;
                return Ok(());
            }
            element(self)?;
            self.skip_space()?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(c) if c == close => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => {
                    return self.err(format!(
                        "expected , or {} in {what}, found {}",
                        char::from(close),
                        self.found()
                    ))
                }
            }
        }
    }

    fn next_char(&mut self) -> Option<char> {
        let c = self.s[self.pos..].chars().next()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn basic_string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            match self.next_char() {
                None | Some('\n' | '\r') => return self.err("unterminated string"),
                Some('"') => return Ok(out),
                Some('\\') => out.push(self.escape()?),
                Some(c) if is_forbidden_control(c) => {
                    return self
                        .err("a string must not contain control characters; write an escape")
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn literal_string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1;
        let start = self.pos;
        loop {
            match self.next_char() {
                None | Some('\n' | '\r') => return self.err("unterminated string"),
                Some('\'') => return Ok(self.s[start..self.pos - 1].to_owned()),
                Some(c) if is_forbidden_control(c) => {
                    return self.err("a string must not contain control characters")
                }
                Some(_) => {}
            }
        }
    }

    /// After a backslash in a basic string.
    fn escape(&mut self) -> Result<char, SyntaxError> {
        let hex = |r: &mut Self, digits: usize| -> Result<char, SyntaxError> {
            let text = r.s.get(r.pos..r.pos + digits).unwrap_or("");
            let code = (text.len() == digits && text.bytes().all(|b| b.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(text, 16).ok())
                .flatten();
            match code.and_then(char::from_u32) {
                Some(c) => {
                    r.pos += digits;
                    Ok(c)
                }
                None => r.err("an escape must give a Unicode scalar value in hex"),
            }
        };
        Ok(match self.next_char() {
            Some('b') => '\u{8}',
            Some('t') => '\t',
            Some('n') => '\n',
            Some('f') => '\u{c}',
            Some('r') => '\r',
            Some('e') => '\u{1b}',
            Some('"') => '"',
            Some('\\') => '\\',
            Some('x') => return hex(self, 2),
            Some('u') => return hex(self, 4),
            Some('U') => return hex(self, 8),
            _ => return self.err("invalid escape in a string"),
        })
    }

    /// `"""…"""` (basic: escapes) or `'''…'''` (literal: none), by `q`;
    /// the reader stands on the opening quotes.
    fn multi_line(&mut self, q: u8) -> Result<String, SyntaxError> {
        let basic = q == b'"';
        self.pos += 3;
        self.skip_first_newline()?;
        let mut out = String::new();
        loop {
            match self.peek() {
                Some(c) if c == q => {
                    if let Some(quotes) = self.quote_run(q)? {
                        out.push_str(quotes);
                        return Ok(out);
                    }
                    out.push(char::from(q));
                    self.pos += 1;
                }
                Some(b'\\') if basic => {
                    self.pos += 1;
                    if self.at_line_ending_backslash() {
                        self.skip_blank();
                        self.newline()?;
                        self.skip_blank_and_newlines()?;
                    } else {
                        out.push(self.escape()?);
                    }
                }
                Some(b'\n' | b'\r') => {
                    let start = self.pos;
                    self.newline()?;
                    out.push_str(&self.s[start..self.pos]);
                }
                None => return self.err("unterminated multi-line string"),
                Some(_) => match self.next_char() {
                    Some(c) if is_forbidden_control(c) => {
                        return self.err(if basic {
                            "a string must not contain control characters; write an escape"
                        } else {
                            "a string must not contain control characters"
                        })
                    }
                    Some(c) => out.push(c),
                    None => unreachable!("peeked a byte"),
                },
            }
        }
    }

    /// A newline right after the opening quotes is not part of the string.
    fn skip_first_newline(&mut self) -> Result<(), SyntaxError> {
        if matches!(self.peek(), Some(b'\n' | b'\r')) {
            self.newline()?;
        }
        Ok(())
    }

    /// On a run of `q`: fewer than three are content (None, nothing
    /// consumed); three to five close the string, the ones before the last
    /// three being content; more is an error.
    fn quote_run(&mut self, q: u8) -> Result<Option<&'static str>, SyntaxError> {
        let run = self.b[self.pos..].iter().take_while(|&&c| c == q).count();
        if run < 3 {
            return Ok(None);
        }
        if run > 5 {
            return self.err("too many quotes at the end of a multi-line string");
        }
        self.pos += run;
        let extra = if q == b'"' { "\"\"" } else { "''" };
        Ok(Some(&extra[..run - 3]))
    }

    /// After a backslash: only blanks up to the end of the line.
    fn at_line_ending_backslash(&self) -> bool {
        let rest = &self.b[self.pos..];
        let blanks = rest
            .iter()
            .take_while(|&&c| c == b' ' || c == b'\t')
            .count();
        matches!(rest.get(blanks), Some(b'\n' | b'\r'))
    }

    fn skip_blank_and_newlines(&mut self) -> Result<(), SyntaxError> {
        loop {
            self.skip_blank();
            match self.peek() {
                Some(b'\n' | b'\r') => self.newline()?,
                _ => return Ok(()),
            }
        }
    }
}

/// Where `s` has its first control character other than tab (a comment ends
/// at the first one, which must be its newline).
///
/// Eight bytes at a time: the shipped config is 5 KB, nearly all comments,
/// read at every VM start, and a byte-by-byte search for the newline was a
/// third of kvmnet-ifup's own instructions. A word with a byte below 0x20 or
/// equal to 0x7f (a tab too) is then looked at byte by byte.
fn first_control(s: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let is_control = |b: u8| (b < 0x20 && b != b'\t') || b == 0x7f;
    let mut at = 0;
    for chunk in s.chunks_exact(8) {
        let w = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        // High bit of a byte set where it is below 0x20 (bytes of 0x80 and
        // up never count: `!w` clears them), or where `w ^ 0x7f…` is zero;
        // a borrow may flag a neighbour too, which the byte loop sorts out.
        let low = w.wrapping_sub(0x20 * ONES) & !w & HIGH;
        let del = w ^ (0x7f * ONES);
        let del = del.wrapping_sub(ONES) & !del & HIGH;
        if low | del != 0 {
            if let Some(i) = chunk.iter().position(|&b| is_control(b)) {
                return Some(at + i);
            }
        }
        at += 8;
    }
    s[at..].iter().position(|&b| is_control(b)).map(|i| at + i)
}

/// A TOML integer: decimal (signed, no leading zeros) or 0x/0o/0b, digits
/// optionally separated by single underscores; within i64.
fn integer(word: &str) -> Option<i64> {
    let (radix, digits, negative) = match word.as_bytes() {
        [b'0', b'x', ..] => (16, &word[2..], false),
        [b'0', b'o', ..] => (8, &word[2..], false),
        [b'0', b'b', ..] => (2, &word[2..], false),
        [b'+', ..] => (10, &word[1..], false),
        [b'-', ..] => (10, &word[1..], true),
        _ => (10, word, false),
    };
    let b = digits.as_bytes();
    let separated = !b.is_empty()
        && b[0] != b'_'
        && b[b.len() - 1] != b'_'
        && !digits.contains("__")
        && b.iter().all(|&c| c == b'_' || (c as char).is_digit(radix));
    if !separated || (radix == 10 && b.len() > 1 && b[0] == b'0') {
        return None;
    }
    let clean: String = digits.chars().filter(|&c| c != '_').collect();
    let magnitude = u64::from_str_radix(&clean, radix).ok()?;
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(text: &str) -> Value {
        let t = parse(&format!("k = {text}\n")).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        t.get("k").unwrap().value.clone()
    }

    fn bad(text: &str) -> SyntaxError {
        parse(text).expect_err(text)
    }

    #[test]
    fn first_control_finds_what_a_byte_loop_finds() {
        let naive = |s: &[u8]| {
            s.iter()
                .position(|&b| (b < 0x20 && b != b'\t') || b == 0x7f)
        };
        let bytes: Vec<u8> = (0..=255u8).collect();
        for len in 0..40 {
            for at in 0..len {
                for &b in &bytes {
                    let mut s = vec![b'a'; len];
                    s[at] = b;
                    if at + 1 < len {
                        s[at + 1] = b'\t';
                    }
                    assert_eq!(first_control(&s), naive(&s), "{s:?}");
                }
            }
        }
        let text = "# ok\té \u{7f}\n";
        assert_eq!(first_control(text.as_bytes()), Some(8));
    }

    #[test]
    fn integers_follow_toml() {
        for (text, n) in [
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("42", 42),
            ("+17", 17),
            ("-17", -17),
            ("1_000", 1000),
            ("0xdead_BEEF", 0xdead_beef),
            ("0o755", 0o755),
            ("0b1101", 13),
            ("9223372036854775807", i64::MAX),
            ("-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(one(text), Value::Int(n), "{text}");
        }
        for text in [
            "01",
            "1__0",
            "_1",
            "1_",
            "0x",
            "+0x1",
            "0xg",
            "9223372036854775808",
            "1.0",
            "1e3",
            "inf",
            "nan",
            "-inf",
            "1979-05-27",
            "07:32:00",
            "0x_1",
            "+",
            "-",
        ] {
            bad(&format!("k = {text}\n"));
        }
    }

    #[test]
    fn strings_follow_toml() {
        for (text, s) in [
            (
                r#""a\tb\"c\\d\u00e9\U0001F600\e\x41""#,
                "a\tb\"c\\d\u{e9}\u{1f600}\u{1b}A",
            ),
            (r"'C:\path\'", r"C:\path\"),
            ("\"\"\"\nline1\nline2\"\"\"", "line1\nline2"),
            ("\"\"\"a \\\n   \n  b\"\"\"", "a b"),
            ("\"\"\"a\"\"\"\"\"", "a\"\""),
            ("'''\r\nx''y'''''", "x''y''"),
            ("\"\"\"\"\"\"", ""),
        ] {
            assert_eq!(one(text), Value::Str(s.into()), "{text}");
        }
        for text in [
            "\"a\nb\"",
            "\"\\q\"",
            "\"\\uD800\"",
            "\"\\u12\"",
            "'a\u{1}'",
            "\"a\u{7f}\"",
            "\"\"\"a\"\"\"\"\"\"",
            "\"\"\"a\rb\"\"\"",
            "\"\"\"a \\ b\"\"\"",
            "\"open",
        ] {
            bad(&format!("k = {text}\n"));
        }
    }

    #[test]
    fn tables_arrays_and_lines() {
        let t = parse(
            "\u{feff}a = [1, 'x', [true],\n  # c\n]\n[[rule]]\nb = { c = 1, d = [2,],\n }\n[[ 'rule' ]]\n",
        )
        .unwrap();
        let Value::Array(rules) = &t.get("rule").unwrap().value else {
            panic!()
        };
        assert_eq!(rules.iter().map(|r| r.line).collect::<Vec<_>>(), [4, 7]);
        let Value::Table(first) = &rules[0].value else {
            panic!()
        };
        assert_eq!(first.get("b").unwrap().line, 5);
        assert_eq!(t.get("a").unwrap().line, 1);
        // inside an inline table, newlines and comments may surround the =
        let t = parse("a = {b\r\n= # c\n 1}\n").unwrap();
        let Value::Table(a) = &t.get("a").unwrap().value else {
            panic!()
        };
        assert_eq!(a.get("b").unwrap().line, 3);
        for (text, line) in [
            ("a = 1\na = 2\n", 2),
            ("[table]\n", 1),
            ("\n[[other]]\n", 2),
            ("a.b = 1\n", 1),
            ("[[rule.x]]\n", 1),
            ("rule = []\n[[rule]]\n", 2),
            ("a = 1 b = 2\n", 1),
            ("a = 1\r\n\rb = 2\n", 2),
            ("# \u{1}\n", 1),
            ("a = [1 2]\n", 1),
            ("a = {b = 1 c = 2}\n", 1),
            ("a = {b = 1, b = 2}\n", 1),
            ("a\n= 1\n", 1),
            ("a =\n1\n", 1),
            ("a = [[[[[[[[[1]]]]]]]]]\n", 1),
            ("a = \n", 1),
            ("= 1\n", 1),
            ("a = truex\n", 1),
            ("\u{a0}a = 1\n", 1),
            (
                &(0..=MAX_KEYS)
                    .map(|i| format!("k{i} = 1\n"))
                    .collect::<String>(),
                MAX_KEYS + 1,
            ),
        ] {
            assert_eq!(bad(text).line, line, "{text:?}");
        }
    }
}
