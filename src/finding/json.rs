//! The finding JSON written directly: the bytes `serde_json` writes for
//! [`Finding`]'s derived `Serialize`, without its per-character escaping
//! of keys that need none and of values that need none. A finding-heavy
//! replay spent a tenth of its time there. The derived form stays the
//! definition: tests compare the two byte for byte.

use serde::Serialize;

use super::Finding;

impl Finding {
    /// Appends the finding JSON (one line) to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Every field, so that a field added to `Finding` without a line
        // here does not compile.
        let Finding {
            rule,
            severity,
            title,
            reason,
            finding_id,
            event_id,
            event_time,
            event_name,
            event_source,
            account_id,
            region,
            principal_type,
            principal_arn,
            user_name,
            source_ip,
            user_agent,
            error_code,
            mfa,
            summary,
            mitre_attack,
            sigma,
            correlation,
            report_age_seconds,
            account_name,
            account_ou,
            account_tags,
            source_ip_context,
            requires_root,
            expected,
            runbook_url,
            event,
        } = self;
        out.extend_from_slice(b"{\"rule\":");
        string(out, rule);
        out.extend_from_slice(b",\"severity\":\"");
        out.extend_from_slice(severity.as_str().as_bytes());
        out.extend_from_slice(b"\",\"title\":");
        string(out, title);
        out.extend_from_slice(b",\"reason\":");
        string(out, reason);
        out.extend_from_slice(b",\"finding_id\":");
        string(out, finding_id);
        for (key, value) in [
            ("event_id", event_id),
            ("event_time", event_time),
            ("event_name", event_name),
            ("event_source", event_source),
            ("account_id", account_id),
            ("region", region),
            ("principal_type", principal_type),
            ("principal_arn", principal_arn),
            ("user_name", user_name),
            ("source_ip", source_ip),
            ("user_agent", user_agent),
            ("error_code", error_code),
        ] {
            key_of(out, key);
            match value {
                Some(v) => string(out, v),
                None => out.extend_from_slice(b"null"),
            }
        }
        key_of(out, "mfa");
        out.extend_from_slice(match mfa {
            Some(true) => b"true",
            Some(false) => b"false",
            None => b"null",
        });
        optional(out, "summary", summary);
        optional(out, "mitre_attack", mitre_attack);
        optional(out, "sigma", sigma);
        optional(out, "correlation", correlation);
        optional(out, "report_age_seconds", report_age_seconds);
        optional(out, "account_name", account_name);
        optional(out, "account_ou", account_ou);
        optional(out, "account_tags", account_tags);
        optional(out, "source_ip_context", source_ip_context);
        optional(out, "requires_root", requires_root);
        optional(out, "expected", expected);
        optional(out, "runbook_url", runbook_url);
        key_of(out, "event");
        out.extend_from_slice(event.get().as_bytes());
        out.push(b'}');
    }
}

/// `,"key":` for a key that needs no escaping.
fn key_of(out: &mut Vec<u8>, key: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `,"key":value` when there is a value, as the derived form's
/// `skip_serializing_if = "Option::is_none"` writes it.
fn optional<T: Serialize>(out: &mut Vec<u8>, key: &str, value: &Option<T>) {
    if let Some(v) = value {
        key_of(out, key);
        serde_json::to_writer(&mut *out, v).expect("a finding's field always serialises");
    }
}

/// A JSON string: copied between quotes when no byte of it needs an escape
/// (the common case: names, ARNs, addresses, user agents), else written by
/// `serde_json`, so that escapes are exactly its own.
fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        serde_json::to_writer(&mut *out, s).expect("a string always serialises");
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether any byte is one JSON escapes: a quote, a backslash or a control
/// character. Chunks are folded without an early exit so that the loop
/// compiles to vector compares.
fn needs_escape(bytes: &[u8]) -> bool {
    let escapes = |acc: bool, &b: &u8| acc | (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut chunks = bytes.chunks_exact(16);
    for chunk in &mut chunks {
        if chunk.iter().fold(false, escapes) {
            return true;
        }
    }
    chunks.remainder().iter().fold(false, escapes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_string_is_written_as_serde_json_writes_it(s in ".*", raw in proptest::collection::vec(0u8..0x80, 0..80)) {
            for s in [s, String::from_utf8(raw).unwrap()] {
                let mut out = Vec::new();
                string(&mut out, &s);
                prop_assert_eq!(out, serde_json::to_vec(&s).unwrap());
            }
        }
    }

    #[test]
    fn needs_escape_finds_each_escaped_byte_at_each_position() {
        for len in 0..40 {
            assert!(!needs_escape(&vec![b'a'; len]));
            for at in 0..len {
                for b in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut bytes = vec![b'a'; len];
                    bytes[at] = b;
                    assert!(needs_escape(&bytes), "{b:#x} at {at} of {len}");
                }
            }
        }
        assert!(!needs_escape("é\u{7f}/'".as_bytes()));
    }
}
