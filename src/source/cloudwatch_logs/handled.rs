//! The events a CloudWatch Logs checkpoint remembers as handled: a
//! fixed-size key per event id ([`EventKey`]), and a compact binary form of
//! a set of them ([`encode`], [`decode`]) whose size has a bound, for the
//! shared DynamoDB item (DynamoDB refuses items over 400 KB).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A CloudWatch Logs event id reduced to 8 bytes: the first 8 of its
/// SHA-256. Real ids are 56 decimal digits, so a remembered event costs a
/// seventh of its id. Two ids share a key with odds of 2^-64 per pair: with
/// a million keys remembered, a new event is taken for a handled one (and
/// not alerted) about once in 10^13 reads. SHA-256 rather than a faster
/// hasher because keys are stored: the standard library's hasher may change
/// between Rust releases, and SHA-256 is already a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventKey(u64);

impl EventKey {
    pub fn of(id: &str) -> Self {
        let digest = Sha256::digest(id.as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        EventKey(u64::from_be_bytes(first))
    }

    /// The 16 hexadecimal digits [`fmt::Display`] writes.
    pub fn from_hex(text: &str) -> Option<Self> {
        if text.len() != 16 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u64::from_str_radix(text, 16).ok().map(EventKey)
    }
}

impl fmt::Display for EventKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl Serialize for EventKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for EventKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        EventKey::from_hex(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{text}` is not an event key (16 hexadecimal digits)"
            ))
        })
    }
}

/// The first byte of an encoded set: the layout [`encode`] writes.
const FORMAT: u8 = 1;

/// The most bytes [`encode`] writes for the table. DynamoDB counts a
/// binary attribute by its bytes, and the item's other attributes (its key
/// and log group name, at most about 1 KB each, the lease and the
/// position) stay under 4 KB: the item stays under 270 KB of DynamoDB's
/// 400 KB. (moto counts a binary attribute by its base64 text, 4/3 of
/// that: still under its limit.) A key takes 8 bytes and its time at most
/// 4 more within a day's lookback (the largest allowed), so this holds at
/// least 21,000 events, and about 29,000 when they are close together.
pub const MAX_ENCODED: usize = 256 * 1024;

/// A set written by [`encode`].
#[derive(Debug)]
pub struct Encoded {
    pub bytes: Vec<u8>,
    /// Entries written.
    pub kept: usize,
    /// Entries left out to stay within the bound: the oldest.
    pub dropped: usize,
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes `handled` (key -> event time) in at most `max` bytes (at least
/// 2): the format byte, the entry count, then each entry in time order as
/// the difference from the previous entry's time (a zigzag varint: a few
/// bytes, as events in the lookback are close together) and the 8-byte
/// key. Past `max`, the oldest entries are left out: after a restart their
/// events, if read again, alert again (a repeat, never a loss), while the
/// checkpoint itself keeps moving.
pub fn encode(handled: &BTreeMap<EventKey, i64>, max: usize) -> Encoded {
    let mut entries: Vec<(i64, EventKey)> = handled.iter().map(|(k, &ts)| (ts, *k)).collect();
    entries.sort_unstable();
    let n = entries.len();
    // after[j]: bytes of entries j.. when entry j is not the first one.
    let mut after = vec![0usize; n + 1];
    for j in (1..n).rev() {
        let delta = entries[j].0.wrapping_sub(entries[j - 1].0);
        after[j] = after[j + 1] + varint_len(zigzag(delta)) + 8;
    }
    let size_from = |j: usize| {
        let head = 1 + varint_len((n - j) as u64);
        if j == n {
            head
        } else {
            head + varint_len(zigzag(entries[j].0)) + 8 + after[j + 1]
        }
    };
    let first = (0..=n).find(|&j| size_from(j) <= max).unwrap_or(n);
    let kept = &entries[first..];
    let mut bytes = Vec::with_capacity(size_from(first));
    bytes.push(FORMAT);
    put_varint(&mut bytes, kept.len() as u64);
    let mut previous = 0i64;
    for (ts, key) in kept {
        put_varint(&mut bytes, zigzag(ts.wrapping_sub(previous)));
        bytes.extend_from_slice(&key.0.to_be_bytes());
        previous = *ts;
    }
    Encoded {
        bytes,
        kept: kept.len(),
        dropped: first,
    }
}

/// Reads what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> Result<BTreeMap<EventKey, i64>, String> {
    match bytes.first() {
        Some(&FORMAT) => {}
        Some(other) => return Err(format!("format {other} is not known")),
        None => return Err("empty".to_owned()),
    }
    let mut at = 1;
    let truncated = || "truncated".to_owned();
    let count = take_varint(bytes, &mut at).ok_or_else(truncated)?;
    // Each entry takes at least 9 bytes: a larger count is corrupt, and is
    // refused before anything is allocated for it.
    if count > ((bytes.len() - at) / 9) as u64 {
        return Err(format!("{count} entries claimed in {} bytes", bytes.len()));
    }
    let mut out = BTreeMap::new();
    let mut previous = 0i64;
    for _ in 0..count {
        let ts =
            previous.wrapping_add(unzigzag(take_varint(bytes, &mut at).ok_or_else(truncated)?));
        let key: [u8; 8] = bytes
            .get(at..at + 8)
            .ok_or_else(truncated)?
            .try_into()
            .expect("8 bytes");
        at += 8;
        out.insert(EventKey(u64::from_be_bytes(key)), ts);
        previous = ts;
    }
    if at != bytes.len() {
        return Err(format!("{} bytes after the last entry", bytes.len() - at));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CloudWatch Logs event id as the service makes them: 56 digits.
    fn cwl_id(i: u64) -> String {
        format!("3{:055}", 37_000_000_000_000_000u64 + i * 7919)
    }

    #[test]
    fn keys_are_stable_and_written_as_hex() {
        // The first 8 bytes of SHA-256("abc"): fixed, as stored keys must be.
        let k = EventKey::of("abc");
        assert_eq!(k.to_string(), "ba7816bf8f01cfea");
        assert_eq!(EventKey::from_hex("ba7816bf8f01cfea"), Some(k));
        assert_eq!(serde_json::to_string(&k).unwrap(), "\"ba7816bf8f01cfea\"");
        assert_eq!(
            serde_json::from_str::<EventKey>("\"ba7816bf8f01cfea\"").unwrap(),
            k
        );
        for bad in [
            "",
            "ba7816bf8f01cfe",
            "ba7816bf8f01cfeaa",
            "+a7816bf8f01cfea",
            "zz7816bf8f01cfea",
        ] {
            assert_eq!(EventKey::from_hex(bad), None, "{bad}");
        }
        assert_ne!(EventKey::of(&cwl_id(1)), EventKey::of(&cwl_id(2)));
    }

    #[test]
    fn a_set_round_trips_in_about_nine_bytes_an_event() {
        let t = 1_800_000_000_000i64;
        let handled: BTreeMap<EventKey, i64> = (0..20_000u64)
            .map(|i| (EventKey::of(&cwl_id(i)), t + (i as i64) * 13 % 300_000))
            .collect();
        let e = encode(&handled, MAX_ENCODED);
        assert_eq!((e.kept, e.dropped), (20_000, 0));
        assert!(e.bytes.len() <= 20_000 * 11 + 16, "{}", e.bytes.len());
        assert_eq!(decode(&e.bytes).unwrap(), handled);
        // As text (id -> time JSON) the same set is far over 400 KB.
        let text: BTreeMap<String, i64> = (0..20_000u64).map(|i| (cwl_id(i), t)).collect();
        assert!(serde_json::to_string(&text).unwrap().len() > 1_400_000);

        let empty = encode(&BTreeMap::new(), MAX_ENCODED);
        assert_eq!(empty.bytes, [FORMAT, 0]);
        assert!(decode(&empty.bytes).unwrap().is_empty());
        // Extreme times round-trip too.
        let odd: BTreeMap<EventKey, i64> = [
            (EventKey(0), i64::MIN),
            (EventKey(u64::MAX), i64::MAX),
            (EventKey(7), -1),
            (EventKey(8), 0),
        ]
        .into();
        assert_eq!(decode(&encode(&odd, MAX_ENCODED).bytes).unwrap(), odd);
    }

    #[test]
    fn past_the_bound_the_oldest_are_left_out() {
        // Far apart in time, so each entry takes 14 bytes: 60,000 of them
        // are three times the bound.
        let handled: BTreeMap<EventKey, i64> = (0..60_000i64)
            .map(|i| (EventKey::of(&cwl_id(i as u64)), i << 34))
            .collect();
        let e = encode(&handled, MAX_ENCODED);
        assert!(e.bytes.len() <= MAX_ENCODED, "{}", e.bytes.len());
        assert!(
            e.bytes.len() > MAX_ENCODED - 32,
            "the bound is used: {}",
            e.bytes.len()
        );
        assert!(e.dropped > 0);
        assert_eq!(e.kept + e.dropped, handled.len());
        let back = decode(&e.bytes).unwrap();
        assert_eq!(back.len(), e.kept);
        let oldest_kept = *back.values().min().unwrap();
        for (k, ts) in &handled {
            assert_eq!(back.get(k), (*ts >= oldest_kept).then_some(ts));
        }
        // Any bound is kept, down to the smallest.
        for max in [2, 3, 10, 20, 100, 1_000] {
            let e = encode(&handled, max);
            assert!(e.bytes.len() <= max, "{max}: {}", e.bytes.len());
            assert_eq!(decode(&e.bytes).unwrap().len(), e.kept);
        }
    }

    #[test]
    fn a_corrupt_set_is_an_error() {
        let handled: BTreeMap<EventKey, i64> = (0..3)
            .map(|i| (EventKey::of(&cwl_id(i)), 1_000 + i as i64))
            .collect();
        let good = encode(&handled, MAX_ENCODED).bytes;
        for (bytes, want) in [
            (vec![], "empty"),
            (vec![2, 0], "format 2"),
            (good[..good.len() - 1].to_vec(), "truncated"),
            ([good.as_slice(), &[0]].concat(), "after the last entry"),
            (vec![FORMAT, 0x80], "truncated"),
            (vec![FORMAT, 0xff, 0xff, 0xff, 0xff, 0x0f], "claimed"),
            (
                vec![FORMAT, 1, 0x80, 0x80, 0, 0, 0, 0, 0, 0, 0],
                "truncated",
            ),
        ] {
            let e = decode(&bytes).unwrap_err();
            assert!(e.contains(want), "{bytes:?}: {e}");
        }
    }
}
