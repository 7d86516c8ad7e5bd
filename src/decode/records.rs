//! CloudTrail log files (`{"Records":[...]}`) read element by element from
//! the bytes, without a JSON parser: a scan that follows strings and braces
//! finds where each record ends, and only the records the caller's
//! prefilter cannot prove silent are parsed. A parser reading through
//! `std::io::Read` pays a call per byte and parses every record whole; on
//! the gzip files CloudTrail writes to S3 this scan is what keeps an S3
//! notification, or a backfill of a bucket, near the speed of JSON lines.
//!
//! Only the shape CloudTrail writes takes this path: an object whose first
//! key is `Records`, an array of objects, then `}`. At anything else (a
//! document of another kind, an element that is not an object, text that
//! is not UTF-8, a file cut short, keys after the array) the rest of the
//! stream goes to the JSON parser from the element where the shape ended,
//! with the text before it restored, so it decodes and fails as it always
//! did; positions in the parser's errors then count from there. One
//! difference, on purpose: a record whose braces and strings pair up but
//! that is not JSON inside is an error for that record alone, where the
//! parser gave up on the rest of the file.

use std::io::{BufRead, Cursor, Read};

use super::{DecodeError, Item, Out, decode_records_element, passed_over};

/// The longest record this scan holds in memory. Longer ones go to the
/// parser (which streams them).
const MAX_ELEMENT: usize = super::MAX_LINE_BYTES;

/// Where the parser takes over: the bytes to put back in front of the
/// rest of the stream, the index the first `Records` element it reads has,
/// and whether that first element is a stand-in to skip.
pub(super) struct HandOver {
    pub prefix: Vec<u8>,
    pub first_index: usize,
    pub skip_first: bool,
}

/// Reads documents from `r` while they have the log-file shape; returns
/// `None` at the end of the stream, or where the parser must take over.
pub(super) fn read_log_files<B: BufRead>(
    r: &mut B,
    parse: &dyn Fn(&[u8]) -> bool,
    out: &mut Out<'_>,
) -> Result<Option<HandOver>, DecodeError> {
    let mut spill = Vec::new();
    loop {
        if peek_past_space(r)?.is_none() {
            return Ok(None);
        }
        // `{`, `"Records"`, `:`, `[`, with any whitespace between.
        let mut prefix = Vec::new();
        for token in [&b"{"[..], b"\"Records\"", b":", b"["] {
            if peek_past_space(r)?.is_none() || !take_literal(r, token, &mut prefix)? {
                return Ok(Some(HandOver {
                    prefix,
                    first_index: 0,
                    skip_first: false,
                }));
            }
        }
        let mut index = 0;
        loop {
            match peek_past_space(r)? {
                Some(b'{') => {}
                Some(b']') if index == 0 => break,
                _ => return Ok(Some(restart(index))),
            }
            spill.clear();
            let Some(end) = read_object(r, &mut spill)? else {
                return Ok(Some(restart_with(index, spill)));
            };
            let utf8 = match end {
                Whole::InBuffer(n) => {
                    let bytes = &fill(r)?[..n];
                    let utf8 = element(bytes, index, parse, out);
                    if !utf8 {
                        spill.extend_from_slice(bytes);
                    }
                    r.consume(n);
                    utf8
                }
                Whole::Spilled => element(&spill, index, parse, out),
            };
            if !utf8 {
                // The parser reports it, as it always did.
                return Ok(Some(restart_with(index, spill)));
            }
            index += 1;
            match peek_past_space(r)? {
                Some(b',') => r.consume(1),
                Some(b']') => break,
                _ => return Ok(Some(after_array())),
            }
        }
        r.consume(1); // the `]`
        if peek_past_space(r)? != Some(b'}') {
            return Ok(Some(after_array()));
        }
        r.consume(1);
    }
}

/// The parser takes over at an element: the array is reopened in front of
/// it. After the first, a `null` that the parser skips stands for the
/// elements before, so a comma in front of the element (or a `]` right
/// after one) still reads, or fails, as it did.
fn restart(index: usize) -> HandOver {
    restart_with(index, Vec::new())
}

fn restart_with(index: usize, element: Vec<u8>) -> HandOver {
    let mut prefix = br#"{"Records":["#.to_vec();
    if index > 0 {
        prefix.extend_from_slice(b"null,");
    }
    prefix.extend(element);
    HandOver {
        prefix,
        first_index: index.saturating_sub(1),
        skip_first: index > 0,
    }
}

/// The parser takes over after the array: an empty one stands for it (the
/// records in it went out already), and the parser reads what follows
/// (more keys, or the error to report).
fn after_array() -> HandOver {
    HandOver {
        prefix: br#"{"Records":[]"#.to_vec(),
        first_index: 0,
        skip_first: false,
    }
}

/// One element's bytes: to the prefilter or the parser. False when they
/// are not UTF-8 (nothing went out).
fn element(bytes: &[u8], index: usize, parse: &dyn Fn(&[u8]) -> bool, out: &mut Out<'_>) -> bool {
    let Ok(text) = simdutf8::basic::from_utf8(bytes) else {
        return false;
    };
    // A silent plain record is passed over unparsed; an S3 event
    // notification's records start with `eventVersion` too, but name an
    // object to fetch, so they are always parsed.
    if passed_over(text, parse) {
        out(Ok(Item::Unparsed(bytes)));
    } else {
        decode_records_element(text, index, out);
    }
    true
}

/// Where an object that starts at the reader's position ends.
enum Whole {
    /// Its `n` bytes are at the front of the reader's buffer, unconsumed.
    InBuffer(usize),
    /// It crossed the buffer's end: its bytes were moved to the spill
    /// (and consumed from the reader).
    Spilled,
}

/// Finds the end of the object starting at the reader's position (a `{`).
/// `None` when the stream ends first or the object is longer than
/// [`MAX_ELEMENT`]; what was read of it is then in `spill`.
fn read_object<B: BufRead>(r: &mut B, spill: &mut Vec<u8>) -> std::io::Result<Option<Whole>> {
    let mut scan = Scan::default();
    loop {
        let buf = fill(r)?;
        if buf.is_empty() {
            return Ok(None);
        }
        if let Some(n) = scan.feed(buf) {
            if spill.is_empty() {
                return Ok(Some(Whole::InBuffer(n)));
            }
            spill.extend_from_slice(&buf[..n]);
            r.consume(n);
            return Ok(Some(Whole::Spilled));
        }
        let n = buf.len();
        if spill.len() + n > MAX_ELEMENT {
            return Ok(None);
        }
        spill.extend_from_slice(buf);
        r.consume(n);
    }
}

/// The state of a scan through one object, kept across buffer refills.
#[derive(Default)]
struct Scan {
    depth: usize,
    in_string: bool,
    /// The last byte fed was a backslash inside a string.
    escaped: bool,
}

impl Scan {
    /// Feeds the next bytes of the object; the length of the prefix of
    /// `bytes` that completes it, if it ends within them. Only braces
    /// outside strings count: in valid JSON they pair up, and an object
    /// the scan misjudges is not valid JSON, which the parser reports
    /// wherever it gets to see it.
    fn feed(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            if self.escaped {
                self.escaped = false;
                i += 1;
                continue;
            }
            if self.in_string {
                let at = i + memchr::memchr2(b'"', b'\\', &bytes[i..])?;
                if bytes[at] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                }
                i = at + 1;
                continue;
            }
            // Between strings there are a few bytes (`":"`, `","`, `":{"`):
            // a plain loop finds the next one sooner than a vector search.
            let at = i + bytes[i..]
                .iter()
                .position(|b| matches!(b, b'"' | b'{' | b'}'))?;
            match bytes[at] {
                b'"' => self.in_string = true,
                b'{' => self.depth += 1,
                _ => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        return Some(at + 1);
                    }
                }
            }
            i = at + 1;
        }
        None
    }
}

fn fill<B: BufRead>(r: &mut B) -> std::io::Result<&[u8]> {
    loop {
        match r.fill_buf() {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // The borrow checker cannot see that the loop ends here.
            _ => break,
        }
    }
    r.fill_buf()
}

/// Consumes JSON whitespace; the next byte, not consumed.
fn peek_past_space<B: BufRead>(r: &mut B) -> std::io::Result<Option<u8>> {
    loop {
        let buf = fill(r)?;
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let space = buf
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
            .count();
        if space == 0 {
            return Ok(Some(first));
        }
        r.consume(space);
    }
}

/// Consumes `literal` if the stream goes on with it. What was consumed is
/// appended to `taken` either way, so the parser can be given it back.
fn take_literal<B: BufRead>(
    r: &mut B,
    literal: &[u8],
    taken: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut matched = 0;
    while matched < literal.len() {
        let buf = fill(r)?;
        let len = buf.len();
        let n = buf
            .iter()
            .zip(&literal[matched..])
            .take_while(|(a, b)| a == b)
            .count();
        taken.extend_from_slice(&buf[..n]);
        r.consume(n);
        matched += n;
        // The stream ended, or a byte differs.
        if len == 0 || (n < len && matched < literal.len()) {
            return Ok(matched == literal.len());
        }
    }
    Ok(true)
}

/// The reader the parser continues with: `prefix`, then the rest of `r`.
pub(super) fn resume<B: BufRead>(prefix: Vec<u8>, r: B) -> impl Read {
    Cursor::new(prefix).chain(r)
}
