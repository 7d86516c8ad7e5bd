//! Envelopes to records (docs/sources.md, "What it reads"). Pure: bytes in, items out
//! through a callback, so records borrow from the input (or from an
//! unwrapped SNS message) without being copied.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read};

use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{Document, Record, Text};

/// SNS can wrap SNS (topic to topic); more than this is a loop or an attack.
pub const MAX_NESTING: usize = 4;

/// What decoding one input produced.
// Items go by value to a callback and are never stored in bulk; boxing the
// record would cost an allocation per event on the hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Item<'a> {
    Record(Record<'a>),
    /// An S3 object holding CloudTrail records, to be fetched by the caller.
    Object(ObjectRef),
    /// Recognised and deliberately ignored.
    Skipped(Skip),
    /// A CloudTrail record the caller's prefilter proved cannot alert,
    /// passed over unparsed (only from [`decode_reader_filtered`]).
    Unparsed(&'a [u8]),
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    /// The bucket's region, when the notification says it.
    pub region: Option<String>,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// `s3:TestEvent`, sent when a bucket notification is configured.
    S3TestEvent,
    /// A CloudTrail digest file.
    Digest,
    /// A CloudWatch Logs subscription `CONTROL_MESSAGE`.
    ControlMessage,
    /// An SNS message other than a `Notification`.
    SnsControl,
    /// An EventBridge event that is neither a CloudTrail event nor a new
    /// S3 object (`Object Deleted`, `Scheduled Event`, ...): a rule that
    /// matches more than it needs to, not an input to keep for the DLQ.
    NotCloudTrail,
}

impl Skip {
    pub const ALL: [Skip; 5] = [
        Skip::S3TestEvent,
        Skip::Digest,
        Skip::ControlMessage,
        Skip::SnsControl,
        Skip::NotCloudTrail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Skip::S3TestEvent => "s3_test_event",
            Skip::Digest => "digest",
            Skip::ControlMessage => "control_message",
            Skip::SnsControl => "sns_control",
            Skip::NotCloudTrail => "not_cloudtrail",
        }
    }
}

/// Which envelope an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Envelope {
    Body,
    EventBridge,
    EventBridgeS3,
    Sns,
    S3Notification,
    CloudTrailNotice,
    Records,
    CloudWatchLogs,
    Record,
    Stream,
}

impl fmt::Display for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Envelope::Body => "message body",
            Envelope::EventBridge => "EventBridge event",
            Envelope::EventBridgeS3 => "EventBridge S3 event",
            Envelope::Sns => "SNS notification",
            Envelope::S3Notification => "S3 event notification",
            Envelope::CloudTrailNotice => "CloudTrail SNS notice",
            Envelope::Records => "Records array",
            Envelope::CloudWatchLogs => "CloudWatch Logs subscription data",
            Envelope::Record => "CloudTrail record",
            Envelope::Stream => "JSON document stream",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("{envelope}: not valid JSON: {source}")]
    Json {
        envelope: Envelope,
        #[source]
        source: serde_json::Error,
    },
    #[error("{envelope}: {problem}")]
    Malformed { envelope: Envelope, problem: String },
    #[error("not a known envelope or a CloudTrail record (top-level keys: {keys})")]
    UnknownEnvelope { keys: String },
    #[error("SNS messages nested more than {MAX_NESTING} deep")]
    TooDeep,
    #[error("{envelope}: not a CloudTrail record (keys: {keys})")]
    NotARecord { envelope: Envelope, keys: String },
    #[error("{envelope}, element {index}: {}", error.detail())]
    Element {
        envelope: Envelope,
        index: usize,
        error: Box<DecodeError>,
    },
    #[error("not valid UTF-8 (at byte {valid_up_to})")]
    InvalidUtf8 { valid_up_to: usize },
    #[error("longer than {MAX_LINE_BYTES} bytes; skipped")]
    LineTooLong,
    #[error("line {line}: {error}")]
    AtLine { line: u64, error: Box<DecodeError> },
    #[error("reading the input: {0}")]
    Io(#[from] std::io::Error),
}

impl DecodeError {
    /// A bounded label for metrics and summaries.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Json { .. } => "invalid_json",
            DecodeError::Malformed { .. } => "malformed",
            DecodeError::UnknownEnvelope { .. } => "unknown_envelope",
            DecodeError::TooDeep => "too_deep",
            DecodeError::NotARecord { .. } => "not_a_record",
            DecodeError::Element { error, .. } | DecodeError::AtLine { error, .. } => error.kind(),
            DecodeError::InvalidUtf8 { .. } => "invalid_utf8",
            DecodeError::LineTooLong => "too_large",
            DecodeError::Io(_) => "io",
        }
    }

    /// The message without its envelope, for an error inside one that is
    /// already named.
    fn detail(&self) -> String {
        match self {
            DecodeError::Json { source, .. } => format!("not valid JSON: {source}"),
            DecodeError::Malformed { problem, .. } => problem.clone(),
            DecodeError::NotARecord { keys, .. } => {
                format!("not a CloudTrail record (keys: {keys})")
            }
            other => other.to_string(),
        }
    }

    fn malformed(envelope: Envelope, problem: impl Into<String>) -> Self {
        DecodeError::Malformed {
            envelope,
            problem: problem.into(),
        }
    }
}

/// Errors of one input kept whole; the rest are only counted. A few
/// hundred KB of gzip can hold a hundred million bad records, and each kept
/// error costs an allocation or two: an input of any size may cost this
/// many, no more.
pub const MAX_KEPT_ERRORS: usize = 100;

/// The decode errors of one input: the first [`MAX_KEPT_ERRORS`] whole
/// (to log, with their positions), and a count of every one by kind.
#[derive(Debug, Default)]
pub struct Errors {
    kept: Vec<DecodeError>,
    by_kind: BTreeMap<&'static str, u64>,
}

impl Errors {
    pub fn push(&mut self, error: DecodeError) {
        *self.by_kind.entry(error.kind()).or_default() += 1;
        if self.kept.len() < MAX_KEPT_ERRORS {
            self.kept.push(error);
        }
    }

    /// Adds `other`'s counts, and its kept errors while there is room.
    pub fn append(&mut self, other: Errors) {
        for (kind, n) in other.by_kind {
            *self.by_kind.entry(kind).or_default() += n;
        }
        let room = MAX_KEPT_ERRORS - self.kept.len();
        self.kept.extend(other.kept.into_iter().take(room));
    }

    pub fn is_empty(&self) -> bool {
        self.by_kind.is_empty()
    }

    /// Every error, kept or not.
    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    pub fn kept(&self) -> &[DecodeError] {
        &self.kept
    }

    /// Every error by kind, kept or not.
    pub fn by_kind(&self) -> &BTreeMap<&'static str, u64> {
        &self.by_kind
    }

    /// The errors that were only counted, by kind.
    pub fn not_kept(&self) -> BTreeMap<&'static str, u64> {
        let mut rest = self.by_kind.clone();
        for e in &self.kept {
            if let Some(n) = rest.get_mut(e.kind()) {
                *n -= 1;
            }
        }
        rest.retain(|_, n| *n > 0);
        rest
    }
}

/// Receives each item or error; decoding goes on after an error where the
/// input allows, so one bad record does not hide the good ones around it.
pub type Out<'o> = dyn FnMut(Result<Item<'_>, DecodeError>) + 'o;

/// Decodes one message body of any kind in docs/sources.md, "What it reads".
pub fn decode_body(body: &str, out: &mut Out<'_>) {
    decode_at(body, 0, &|_| true, out)
}

/// [`decode_body`] that passes over, as [`Item::Unparsed`], a CloudTrail
/// record `parse` says no to where the body's own parse has already proved
/// the record's bytes JSON: an EventBridge event's `detail`, and a plain
/// record in a `Records` array. A body that is a bare record is always
/// parsed: nothing else has checked its syntax, and a body that is not
/// JSON must still be reported.
pub fn decode_body_filtered(body: &str, parse: &dyn Fn(&[u8]) -> bool, out: &mut Out<'_>) {
    decode_at(body, 0, parse, out)
}

/// A plain record (not an S3 notification's, which names an object to
/// fetch) that `parse` says no to. `aws:s3` cannot be written with an
/// escape the check misses: any `\u` in the value makes the prefilter
/// parse the record.
fn passed_over(text: &str, parse: &dyn Fn(&[u8]) -> bool) -> bool {
    is_plain_record(text)
        && !parse(text.as_bytes())
        && memchr::memmem::find(text.as_bytes(), br#""aws:s3""#).is_none()
}

fn decode_at(body: &str, depth: usize, parse: &dyn Fn(&[u8]) -> bool, out: &mut Out<'_>) {
    if depth > MAX_NESTING {
        return out(Err(DecodeError::TooDeep));
    }
    let trimmed = body.trim_start();
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Vec<&RawValue>>(body) {
            Ok(items) => {
                for item in items {
                    decode_at(item.get(), depth + 1, parse, out);
                }
            }
            Err(source) => out(Err(DecodeError::Json {
                envelope: Envelope::Body,
                source,
            })),
        };
    }
    let doc: Document<'_> = match serde_json::from_str(body) {
        Ok(d) => d,
        Err(source) => {
            return out(Err(DecodeError::Json {
                envelope: Envelope::Body,
                source,
            }));
        }
    };

    if let Some(detail_type) = doc.detail_type.get() {
        return decode_eventbridge(detail_type, &doc, parse, out);
    }
    if let Some(kind) = doc.sns_type.get() {
        if !kind.eq_ignore_ascii_case("Notification") {
            return out(Ok(Item::Skipped(Skip::SnsControl)));
        }
        return match doc.sns_message.get() {
            Some(inner) => decode_at(inner, depth + 1, parse, out),
            None => out(Err(DecodeError::malformed(
                Envelope::Sns,
                "`Message` is missing or not a string",
            ))),
        };
    }
    if let Some(records) = doc.records {
        for (index, item) in records.into_iter().enumerate() {
            let raw = item.get();
            if passed_over(raw, parse) {
                out(Ok(Item::Unparsed(raw.as_bytes())));
            } else {
                decode_records_element(raw, index, out);
            }
        }
        return;
    }
    if doc.s3_bucket.get().is_some() || doc.s3_object_key.is_some() {
        return decode_cloudtrail_notice(&doc, out);
    }
    if let Some(kind) = doc.message_type.get() {
        return decode_subscription(kind, doc.log_events, out);
    }
    if doc.s3_test_event.is("s3:TestEvent") {
        return out(Ok(Item::Skipped(Skip::S3TestEvent)));
    }
    if doc.digest_start_time.get().is_some() || doc.digest_end_time.get().is_some() {
        return out(Ok(Item::Skipped(Skip::Digest)));
    }
    if looks_like_record(&doc) {
        return out(Ok(Item::Record(Record::from_document(body, doc))));
    }
    out(Err(DecodeError::UnknownEnvelope {
        keys: top_level_keys(body),
    }))
}

fn looks_like_record(doc: &Document<'_>) -> bool {
    doc.event_version.get().is_some()
        || doc.event_id.get().is_some()
        || (doc.event_name.get().is_some()
            && (doc.event_source.get().is_some() || doc.user_identity.get().is_some()))
}

fn top_level_keys(body: &str) -> String {
    match serde_json::from_str::<BTreeMap<Cow<'_, str>, IgnoredAny>>(body) {
        Ok(map) if map.is_empty() => "none".into(),
        Ok(map) => {
            let mut keys: Vec<&str> = map.keys().map(|k| k.as_ref()).take(12).collect();
            if map.len() > 12 {
                keys.push("…");
            }
            keys.join(", ")
        }
        Err(_) => "not an object".into(),
    }
}

/// The detail-type decides, not the source: EventBridge sets `source` to
/// `aws.<service>` of the call, so a root S3 API call arrives as `aws.s3`
/// with `AWS API Call via CloudTrail`, and is a record like any other.
fn decode_eventbridge(
    detail_type: &str,
    doc: &Document<'_>,
    parse: &dyn Fn(&[u8]) -> bool,
    out: &mut Out<'_>,
) {
    let is_cloudtrail = detail_type.ends_with("via CloudTrail");
    let is_new_object = detail_type == "Object Created" && doc.source.is("aws.s3");
    if !is_cloudtrail && !is_new_object {
        return out(Ok(Item::Skipped(Skip::NotCloudTrail)));
    }
    let Some(detail) = doc.detail else {
        let envelope = if is_cloudtrail {
            Envelope::EventBridge
        } else {
            Envelope::EventBridgeS3
        };
        return out(Err(DecodeError::malformed(envelope, "`detail` is missing")));
    };
    if is_cloudtrail {
        if passed_over(detail.get(), parse) {
            return out(Ok(Item::Unparsed(detail.get().as_bytes())));
        }
        return decode_record(detail.get(), Envelope::EventBridge, out);
    }
    // EventBridge carries S3 keys as they are, not URL-encoded.
    match serde_json::from_str::<S3Detail<'_>>(detail.get()) {
        Ok(d) => match (d.bucket.name.non_empty(), d.object.key.non_empty()) {
            (Some(bucket), Some(key)) => out(Ok(Item::Object(ObjectRef {
                bucket: bucket.to_owned(),
                key: key.to_owned(),
                region: doc.region.non_empty().map(str::to_owned),
            }))),
            _ => out(Err(DecodeError::malformed(
                Envelope::EventBridgeS3,
                "`detail.bucket.name` or `detail.object.key` is missing",
            ))),
        },
        Err(source) => out(Err(DecodeError::Json {
            envelope: Envelope::EventBridgeS3,
            source,
        })),
    }
}

/// A document that must be one CloudTrail record (an EventBridge detail, a
/// CloudWatch Logs event): anything else is an error naming its keys.
fn decode_record(raw: &str, envelope: Envelope, out: &mut Out<'_>) {
    match serde_json::from_str::<Document<'_>>(raw) {
        Ok(doc) if looks_like_record(&doc) => {
            out(Ok(Item::Record(Record::from_document(raw, doc))))
        }
        Ok(_) => out(Err(DecodeError::NotARecord {
            envelope,
            keys: top_level_keys(raw),
        })),
        Err(source) => out(Err(DecodeError::Json { envelope, source })),
    }
}

/// One element of `{"Records": [...]}`: a CloudTrail record, or an S3
/// event notification record (which names an object to fetch). Anything
/// else (`{}`, a string, an object of other keys) is an error naming the
/// element's index; the elements around it still count.
fn decode_records_element(raw: &str, index: usize, out: &mut Out<'_>) {
    let envelope = Envelope::Records;
    let at = |error: DecodeError| DecodeError::Element {
        envelope,
        index,
        error: Box::new(error),
    };
    let doc: Document<'_> = match serde_json::from_str(raw) {
        Ok(d) => d,
        Err(source) => return out(Err(at(DecodeError::Json { envelope, source }))),
    };
    match doc.s3 {
        Some(s3) if doc.event_source.is("aws:s3") => {
            out(s3_notification_ref(s3.get(), doc.aws_region.non_empty()).map_err(at))
        }
        _ if looks_like_record(&doc) => out(Ok(Item::Record(Record::from_document(raw, doc)))),
        _ => out(Err(at(DecodeError::NotARecord {
            envelope,
            keys: top_level_keys(raw),
        }))),
    }
}

fn s3_notification_ref(raw: &str, region: Option<&str>) -> Result<Item<'static>, DecodeError> {
    let env = Envelope::S3Notification;
    let s3: S3Detail<'_> = serde_json::from_str(raw).map_err(|source| DecodeError::Json {
        envelope: env,
        source,
    })?;
    let (Some(bucket), Some(key)) = (s3.bucket.name.non_empty(), s3.object.key.non_empty()) else {
        return Err(DecodeError::malformed(
            env,
            "`s3.bucket.name` or `s3.object.key` is missing",
        ));
    };
    Ok(Item::Object(ObjectRef {
        bucket: bucket.to_owned(),
        key: decode_s3_key(key).ok_or_else(|| {
            DecodeError::malformed(
                env,
                format!("object key `{key}` is not valid URL-encoded UTF-8"),
            )
        })?,
        region: region.map(str::to_owned),
    }))
}

/// S3 event notifications URL-encode object keys, with `+` for a space.
pub fn decode_s3_key(key: &str) -> Option<String> {
    let spaced = key.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(Cow::into_owned)
}

fn decode_cloudtrail_notice(doc: &Document<'_>, out: &mut Out<'_>) {
    let env = Envelope::CloudTrailNotice;
    let Some(bucket) = doc.s3_bucket.non_empty() else {
        return out(Err(DecodeError::malformed(env, "`s3Bucket` is missing")));
    };
    let keys: Vec<Text<'_>> = match doc.s3_object_key {
        None => return out(Err(DecodeError::malformed(env, "`s3ObjectKey` is missing"))),
        Some(raw) if raw.get().trim_start().starts_with('[') => {
            match serde_json::from_str(raw.get()) {
                Ok(keys) => keys,
                Err(source) => {
                    return out(Err(DecodeError::Json {
                        envelope: env,
                        source,
                    }));
                }
            }
        }
        Some(raw) => match serde_json::from_str(raw.get()) {
            Ok(key) => vec![key],
            Err(source) => {
                return out(Err(DecodeError::Json {
                    envelope: env,
                    source,
                }));
            }
        },
    };
    for key in keys {
        match key.non_empty() {
            Some(k) => out(Ok(Item::Object(ObjectRef {
                bucket: bucket.to_owned(),
                key: k.to_owned(),
                region: None,
            }))),
            None => out(Err(DecodeError::malformed(
                env,
                "an `s3ObjectKey` entry is empty",
            ))),
        }
    }
}

#[derive(serde::Deserialize)]
struct LogEvent<'a> {
    #[serde(borrow)]
    message: Cow<'a, str>,
}

fn decode_subscription(kind: &str, events: Option<&RawValue>, out: &mut Out<'_>) {
    let env = Envelope::CloudWatchLogs;
    match kind {
        "CONTROL_MESSAGE" => out(Ok(Item::Skipped(Skip::ControlMessage))),
        "DATA_MESSAGE" => {
            let Some(events) = events else {
                return out(Err(DecodeError::malformed(env, "`logEvents` is missing")));
            };
            match serde_json::from_str::<Vec<LogEvent<'_>>>(events.get()) {
                Ok(events) => {
                    for e in events {
                        decode_record(&e.message, env, out);
                    }
                }
                Err(source) => out(Err(DecodeError::Json {
                    envelope: env,
                    source,
                })),
            }
        }
        other => out(Err(DecodeError::malformed(
            env,
            format!("unknown messageType `{other}`"),
        ))),
    }
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct S3Detail<'a> {
    #[serde(borrow)]
    bucket: S3Bucket<'a>,
    #[serde(borrow)]
    object: S3Object<'a>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct S3Bucket<'a> {
    #[serde(borrow)]
    name: Text<'a>,
}

#[derive(Default, serde::Deserialize)]
#[serde(default)]
struct S3Object<'a> {
    #[serde(borrow)]
    key: Text<'a>,
}

/// Decodes a byte stream: gzip or plain, holding one or more JSON documents
/// back to back (a CloudTrail log file, JSON lines, or CloudWatch Logs
/// subscription data as Firehose writes it). A `Records` array is streamed
/// one record at a time, so memory stays bounded by the largest record, not
/// the file. Returns an error when the stream itself cannot be read further
/// (I/O or JSON syntax); items already passed to `out` stand.
pub fn decode_reader<R: Read>(reader: R, out: &mut Out<'_>) -> Result<(), DecodeError> {
    decode_reader_filtered(reader, &|_| true, out)
}

/// [`decode_reader`] that parses a record of a CloudTrail log file
/// (`{"Records":[...]}`) only when `parse` says so: a plain record (an
/// object whose first key is `eventVersion`, not an S3 notification's) that
/// it says no to comes out as [`Item::Unparsed`]. Such a record is not
/// checked further: one that is not valid JSON inside, or lacks the other
/// fields of a record, is counted as a record that could not alert.
pub fn decode_reader_filtered<R: Read>(
    reader: R,
    parse: &dyn Fn(&[u8]) -> bool,
    out: &mut Out<'_>,
) -> Result<(), DecodeError> {
    let mut plain = maybe_gunzip(reader)?;
    match records::read_log_files(&mut plain, parse, out)? {
        None => Ok(()),
        // Resumed inside a log file: the parser streams the rest, from
        // the element where the scan stopped.
        Some(from) if (from.first_index, from.skip_first) != (0, false) => decode_documents(
            records::resume(from.prefix, plain),
            from.first_index,
            from.skip_first,
            out,
        ),
        Some(from) => {
            documents::decode_documents_buffered(records::resume(from.prefix, plain), parse, out)
        }
    }
}

/// The `eventTime` in a record's bytes, read without parsing the record:
/// the first `"eventTime"` key's value when it is a plain string. For
/// telemetry only: a nested key of that name that came first would be
/// read instead (CloudTrail writes the record's own near the start).
pub fn event_time(record: &[u8]) -> Option<chrono::DateTime<chrono::Utc>> {
    const KEY: &[u8] = br#""eventTime""#;
    let at = memchr::memmem::find(record, KEY)? + KEY.len();
    let rest = record[at..].trim_ascii_start().strip_prefix(b":")?;
    let rest = rest.trim_ascii_start().strip_prefix(b"\"")?;
    let end = memchr::memchr2(b'"', b'\\', rest)?;
    if rest[end] != b'"' {
        return None;
    }
    crate::event::parse_event_time(std::str::from_utf8(&rest[..end]).ok()?)
}

/// The first two bytes of a gzip stream.
pub const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Opens a possibly gzip-compressed reader as plain bytes; gzip is told by
/// its magic number, not by a file name. The first read may return a
/// single byte (a network stream), so the magic is read until two bytes or
/// the end, then put back in front of the rest.
pub fn maybe_gunzip<'a, R: Read + 'a>(mut reader: R) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let mut magic = [0u8; 2];
    let mut got = 0;
    while got < magic.len() {
        match reader.read(&mut magic[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let whole = std::io::Cursor::new(magic[..got].to_vec()).chain(reader);
    let buf = BufReader::with_capacity(64 * 1024, whole);
    Ok(if magic[..got] == GZIP_MAGIC {
        Box::new(BufReader::with_capacity(
            64 * 1024,
            flate2::read::MultiGzDecoder::new(buf),
        ))
    } else {
        Box::new(buf)
    })
}

/// The longest line [`decode_lines`] reads; a longer one is skipped up to
/// its end and reported, so one runaway line cannot take the memory.
/// Generous: a whole CloudTrail log file written as one line fits.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Decodes JSON lines (gzip or plain): each line is one body of any kind.
/// `out` gets the 1-based line number with each item. A line that is not
/// UTF-8, not JSON or too long is an error for that line alone; reading
/// goes on with the next. Returns an error only when the stream itself
/// cannot be read further.
pub fn decode_lines<R: Read>(
    reader: R,
    out: &mut dyn FnMut(u64, Result<Item<'_>, DecodeError>),
) -> Result<(), DecodeError> {
    decode_lines_filtered(reader, &|_| true, out, &mut |_| {})
}

/// [`decode_lines`] that parses a line holding one plain CloudTrail record
/// only when `parse` says so (a prefilter that proved the record cannot
/// alert says no); such a line goes to `unparsed` with its number instead
/// of being decoded. A plain record is a line shaped as AWS writes one: an
/// object whose first key is `eventVersion`. Envelopes and anything else
/// are always decoded. A line that is invalid JSON but shaped like a record
/// and passed over is counted as a record, not reported as an error: it
/// could not have alerted either way.
pub fn decode_lines_filtered<R: Read>(
    reader: R,
    parse: &dyn Fn(&[u8]) -> bool,
    out: &mut dyn FnMut(u64, Result<Item<'_>, DecodeError>),
    unparsed: &mut dyn FnMut(u64),
) -> Result<(), DecodeError> {
    decode_plain_lines_filtered(maybe_gunzip(reader)?, parse, out, unparsed).map(|_| ())
}

/// [`decode_lines_filtered`] on bytes known not to be compressed; the
/// number of lines read (blank ones included).
pub fn decode_plain_lines_filtered<B: BufRead>(
    mut reader: B,
    parse: &dyn Fn(&[u8]) -> bool,
    out: &mut dyn FnMut(u64, Result<Item<'_>, DecodeError>),
    unparsed: &mut dyn FnMut(u64),
) -> Result<u64, DecodeError> {
    let mut spill = Vec::new();
    let mut number = 0u64;
    let mut line = |number: u64, bytes: Option<&[u8]>| {
        let Some(bytes) = bytes else {
            return out(number, Err(DecodeError::LineTooLong));
        };
        // Every line is validated, the ones the prefilter passes over too
        // (a corrupt file is reported); the SIMD check costs a fraction of
        // the standard one on the mostly-ASCII text of a trail.
        let text = match simdutf8::basic::from_utf8(bytes).or_else(|_| std::str::from_utf8(bytes)) {
            Ok(t) => t,
            Err(e) => {
                return out(
                    number,
                    Err(DecodeError::InvalidUtf8 {
                        valid_up_to: e.valid_up_to(),
                    }),
                );
            }
        };
        if text.trim().is_empty() {
            return;
        }
        if is_plain_record(text) && !parse(bytes) {
            return unparsed(number);
        }
        decode_body(text, &mut |item| out(number, item));
    };
    loop {
        // A line whole in the reader's buffer is decoded where it lies;
        // only one that crosses the buffer's end is copied.
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        if available.is_empty() {
            return Ok(number);
        }
        if let Some(end) = memchr::memchr(b'\n', available) {
            number += 1;
            line(number, (end <= MAX_LINE_BYTES).then(|| &available[..end]));
            reader.consume(end + 1);
            continue;
        }
        spill.clear();
        let (_, complete) = read_line_bounded(&mut reader, &mut spill, MAX_LINE_BYTES)?;
        number += 1;
        line(number, complete.then_some(&spill[..]));
    }
}

/// Shaped like one CloudTrail record as AWS writes it: `{"eventVersion":`
/// first, `}` last.
fn is_plain_record(text: &str) -> bool {
    let t = text.trim_ascii();
    t.ends_with('}')
        && t.strip_prefix('{')
            .is_some_and(|rest| rest.trim_ascii_start().starts_with("\"eventVersion\""))
}

/// Reads one line (without its `\n`) into `buf`, keeping at most `max`
/// bytes; the rest of a longer line is consumed and dropped. Returns the
/// bytes consumed (0 at the end) and whether the line fitted.
fn read_line_bounded(
    reader: &mut dyn BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    let (mut consumed, mut fits) = (0, true);
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok((consumed, fits));
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if fits && buf.len() + chunk.len() <= max {
            buf.extend_from_slice(chunk);
        } else {
            fits = false;
            buf.clear();
        }
        let used = done.unwrap_or(available.len());
        reader.consume(used);
        consumed += used;
        if done.is_some() {
            return Ok((consumed, fits));
        }
    }
}

/// Documents back to back. The first `Records` element read is numbered
/// `first_index` and, with `skip_first`, passed over (it stands for the
/// elements before it, decoded already).
fn decode_documents<R: Read>(
    reader: R,
    mut first_index: usize,
    mut skip_first: bool,
    out: &mut Out<'_>,
) -> Result<(), DecodeError> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    loop {
        if de.end().is_ok() {
            return Ok(());
        }
        DocumentSeed {
            out: &mut *out,
            first_index: std::mem::take(&mut first_index),
            skip_first: std::mem::take(&mut skip_first),
        }
        .deserialize(&mut de)
        .map_err(|source| {
            if source.is_io() {
                DecodeError::Io(source.into())
            } else {
                DecodeError::Json {
                    envelope: Envelope::Stream,
                    source,
                }
            }
        })?;
    }
}

struct DocumentSeed<'s, 'o> {
    out: &'s mut Out<'o>,
    first_index: usize,
    skip_first: bool,
}

impl<'de> DeserializeSeed<'de> for DocumentSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for DocumentSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object or array")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut other: Vec<(String, Box<RawValue>)> = Vec::new();
        let mut streamed = false;
        while let Some(key) = map.next_key::<String>()? {
            if key == "Records" {
                map.next_value_seed(RecordsSeed {
                    out: &mut *self.out,
                    first_index: self.first_index,
                    skip_first: self.skip_first,
                })?;
                streamed = true;
            } else {
                other.push((key, map.next_value()?));
            }
        }
        if !streamed {
            // Not a log file: rebuild the (small) document and decode it as a body.
            let mut text = String::from("{");
            for (i, (k, v)) in other.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&serde_json::to_string(k).unwrap_or_default());
                text.push(':');
                text.push_str(v.get());
            }
            text.push('}');
            decode_body(&text, self.out);
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            decode_body(item.get(), self.out);
        }
        Ok(())
    }
}

struct RecordsSeed<'s, 'o> {
    out: &'s mut Out<'o>,
    first_index: usize,
    skip_first: bool,
}

impl<'de> DeserializeSeed<'de> for RecordsSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for RecordsSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of records")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut index = self.first_index;
        if self.skip_first {
            seq.next_element::<IgnoredAny>()?;
            index += 1;
        }
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            decode_records_element(item.get(), index, self.out);
            index += 1;
        }
        Ok(())
    }
}

mod documents;
mod records;
#[cfg(test)]
mod tests;
