//! JSON documents back to back (JSON lines on standard input, a `.json`
//! file of EventBridge events, an array of records), read in blocks and
//! decoded from memory. The JSON parser reading through `std::io::Read`
//! pays a call per byte and rebuilds every document that is not a log
//! file before decoding it: `replay -` on JSON lines ran at a thirtieth of
//! the speed of the same file named `.jsonl`.
//!
//! A block is split into whole documents by the parser itself (skipping
//! values, from memory); each document is then decoded from its own text,
//! as a body. A plain record whose syntax the split has checked may be
//! passed over unparsed, as in a `Records` array. Anything the split
//! cannot take (a syntax error, text that is not UTF-8, a stream cut
//! short, one document longer than [`MAX_DOCUMENT`]) goes to the streaming
//! parser from the start of that document, so it decodes and fails as it
//! always did; positions in its errors then count from there.

use std::io::{Cursor, Read};

use serde::de::{DeserializeSeed, IgnoredAny};

use super::{DecodeError, DocumentSeed, Item, Out, decode_at, decode_documents, passed_over};

/// The longest document held in memory; a longer one is streamed.
const MAX_DOCUMENT: usize = super::MAX_LINE_BYTES;

/// The most one read asks for.
const BLOCK: usize = 256 * 1024;

/// Decodes the documents of `reader`, from the start of a document.
pub(super) fn decode_documents_buffered<R: Read>(
    mut reader: R,
    parse: &dyn Fn(&[u8]) -> bool,
    out: &mut Out<'_>,
) -> Result<(), DecodeError> {
    let mut buf: Vec<u8> = Vec::new();
    let mut eof = false;
    // Where `buf` starts in the stream, for the streaming parser's errors.
    let mut at = Position::default();
    // The buffer is split again once it holds this much: twice a document
    // cut short, so that one arriving a few bytes a read is not split over
    // and over (its bytes are read again at each split); at most one byte
    // past the longest document held, so that the buffer stops there.
    let mut want = 0;
    let mut block = vec![0u8; BLOCK];
    loop {
        if eof || buf.len() >= want {
            match split(&buf, eof, parse, out) {
                Split::Used(used) => {
                    at.advance(&buf[..used]);
                    buf.drain(..used);
                }
                Split::Stream(from) => {
                    at.advance(&buf[..from]);
                    let rest = Cursor::new(buf.split_off(from)).chain(reader);
                    return decode_documents(at.padding().chain(rest), 0, false, out);
                }
            }
            if eof {
                return Ok(());
            }
            if buf.len() > MAX_DOCUMENT {
                let rest = Cursor::new(buf).chain(reader);
                return decode_documents(at.padding().chain(rest), 0, false, out);
            }
            want = (2 * buf.len()).min(MAX_DOCUMENT + 1);
        }
        let read = loop {
            match reader.read(&mut block) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r,
            }
        };
        match read {
            Ok(0) => eof = true,
            Ok(n) => buf.extend_from_slice(&block[..n]),
            Err(e) => return Err(DecodeError::Io(e)),
        }
    }
}

/// What [`split`] did with the bytes it was given.
enum Split {
    /// Decoded the documents in the first N bytes; what follows is white
    /// space or a document cut short (more bytes will tell).
    Used(usize),
    /// Decoded the documents before this offset; the streaming parser
    /// takes the rest, from the start of a document it must decode.
    Stream(usize),
}

/// A place in the stream as the JSON parser counts it: lines, and bytes
/// since the last line break.
#[derive(Default)]
struct Position {
    lines: usize,
    column: usize,
}

impl Position {
    fn advance(&mut self, bytes: &[u8]) {
        match memchr::memrchr(b'\n', bytes) {
            Some(last) => {
                self.lines += bytes.iter().filter(|&&b| b == b'\n').count();
                self.column = bytes.len() - last - 1;
            }
            None => self.column += bytes.len(),
        }
    }

    /// White space that brings the streaming parser, reading it first, to
    /// this place: its errors then name the line and column they had when
    /// it read the whole stream.
    fn padding(&self) -> Cursor<Vec<u8>> {
        let mut pad = vec![b'\n'; self.lines];
        pad.resize(self.lines + self.column, b' ');
        Cursor::new(pad)
    }
}

/// Decodes the whole documents at the start of `bytes`. At the end of the
/// stream (`eof`) a document cut short is the streaming parser's to
/// report.
fn split(bytes: &[u8], eof: bool, parse: &dyn Fn(&[u8]) -> bool, out: &mut Out<'_>) -> Split {
    let mut docs = serde_json::Deserializer::from_slice(bytes).into_iter::<IgnoredAny>();
    let mut used = 0;
    loop {
        match docs.next() {
            None => return Split::Used(bytes.len()),
            Some(Ok(_)) => {
                let end = docs.byte_offset();
                if !document(&bytes[used..end], parse, out) {
                    return Split::Stream(used);
                }
                used = end;
            }
            Some(Err(e)) if e.is_eof() && !eof => return Split::Used(used),
            Some(Err(_)) => return Split::Stream(used),
        }
    }
}

/// Decodes one document whose syntax the split has checked (with the white
/// space before it). False, having decoded nothing, when the streaming
/// parser must: its text is not UTF-8, or its seed refuses it (a value that
/// is not an object or array, `Records` that is not an array), which ends
/// the stream with an error at its place.
fn document(bytes: &[u8], parse: &dyn Fn(&[u8]) -> bool, out: &mut Out<'_>) -> bool {
    let Ok(text) = simdutf8::basic::from_utf8(bytes.trim_ascii()) else {
        return false;
    };
    match text.as_bytes().first() {
        Some(b'[') => {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_str(text).expect("the split checked the array's syntax");
            for item in items {
                decode_at(item.get(), 0, parse, out);
            }
        }
        Some(b'{') => match records_key(text) {
            // A log file: the seed streams its `Records` from memory.
            Ok(true) => DocumentSeed {
                out,
                first_index: 0,
                skip_first: false,
            }
            .deserialize(&mut serde_json::Deserializer::from_str(text))
            .expect("records_key checked what the seed refuses"),
            Ok(false) if passed_over(text, parse) => out(Ok(Item::Unparsed(text.as_bytes()))),
            Ok(false) => decode_at(text, 0, parse, out),
            Err(()) => return false,
        },
        _ => return false,
    }
    true
}

/// Whether the object `text` has a `Records` key (which the seed streams),
/// each one an array; an error when one is not (the seed refuses it). Most
/// objects hold neither the key nor a `\u` escape that could spell it, and
/// are not read.
fn records_key(text: &str) -> Result<bool, ()> {
    let bytes = text.as_bytes();
    if memchr::memmem::find(bytes, br#""Records""#).is_none()
        && memchr::memmem::find(bytes, br"\u").is_none()
    {
        return Ok(false);
    }
    serde_json::from_str::<RecordsKey>(text)
        .map(|k| k.0)
        .map_err(drop)
}

/// An object read for its `Records` keys only.
struct RecordsKey(bool);

impl<'de> serde::Deserialize<'de> for RecordsKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(RecordsKeyVisitor)
    }
}

struct RecordsKeyVisitor;

impl<'de> serde::de::Visitor<'de> for RecordsKeyVisitor {
    type Value = RecordsKey;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<RecordsKey, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "Records" {
                map.next_value::<ArrayOnly>()?;
                found = true;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(RecordsKey(found))
    }
}

/// Any array, its elements skipped; anything else is an error.
struct ArrayOnly;

impl<'de> serde::Deserialize<'de> for ArrayOnly {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(ArrayOnlyVisitor)
    }
}

struct ArrayOnlyVisitor;

impl<'de> serde::de::Visitor<'de> for ArrayOnlyVisitor {
    type Value = ArrayOnly;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<ArrayOnly, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ArrayOnly)
    }
}
