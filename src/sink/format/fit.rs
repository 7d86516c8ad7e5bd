//! Fitting a body under a receiver's size limit (SNS and EventBridge take
//! 256 KiB). The raw CloudTrail record is what makes a body large, and it
//! is attacker-sized: it is replaced by a marker object that keeps as much
//! of its text as fits, so the body stays valid JSON and says it was cut.
//! Only if the finding's own fields are still too large are they cut too.
//! Pure.

use crate::finding::RawEvent;

use super::escape::{TRUNCATED, truncate};
use crate::finding::Finding;

/// The key of the object that replaces a record too large to send whole:
/// `{"rootwatch_truncated": true, "original_bytes": N, "head": "<text>"}`,
/// `head` being the record's JSON text up to the cut.
pub const MARKER: &str = "rootwatch_truncated";

/// Longest value of a finding field once fields have to be cut.
const FIELD_MAX: usize = 2048;

/// `render(f)`, or `render` of a copy of `f` cut as little as needed to be
/// at most `max` bytes. `Err` holds the smallest size reached when even a
/// fully cut finding does not fit.
pub fn fit(
    f: &Finding,
    max: usize,
    render: impl Fn(&Finding) -> Vec<u8>,
) -> Result<Vec<u8>, usize> {
    let body = render(f);
    if body.len() <= max {
        return Ok(body);
    }
    if let Some(body) = trim_event(f, max, &render) {
        return Ok(body);
    }
    let cut = cut_fields(f);
    if let Some(body) = trim_event(&cut, max, &render) {
        return Ok(body);
    }
    Err(render(&with_head(&cut, 0)).len())
}

/// `f` with its event replaced by the marker holding the first `head`
/// bytes (rounded down to a character boundary) of the record's text.
fn with_head(f: &Finding, head: usize) -> Finding {
    let raw = f.event.get();
    let mut end = head.min(raw.len());
    while !raw.is_char_boundary(end) {
        end -= 1;
    }
    let marker = serde_json::json!({
        MARKER: true,
        "original_bytes": raw.len(),
        "head": &raw[..end],
    });
    let mut g = f.clone();
    g.event = RawEvent::from_value(&marker);
    g
}

/// The longest head that fits, found by bisection (escaping makes the body
/// grow by up to six bytes per byte of head, so the size is not linear).
fn trim_event(f: &Finding, max: usize, render: &impl Fn(&Finding) -> Vec<u8>) -> Option<Vec<u8>> {
    let mut best = render(&with_head(f, 0));
    if best.len() > max {
        return None;
    }
    let (mut lo, mut hi) = (0usize, f.event.get().len());
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let body = render(&with_head(f, mid));
        if body.len() <= max {
            lo = mid;
            best = body;
        } else {
            hi = mid - 1;
        }
    }
    Some(best)
}

/// `f` with every event-derived text field cut to [`FIELD_MAX`] and a
/// summary's event names to the first 20.
fn cut_fields(f: &Finding) -> Finding {
    let mut g = f.clone();
    let cut = |s: &mut String| {
        if s.chars().count() > FIELD_MAX {
            *s = truncate(s, FIELD_MAX);
        }
    };
    cut(&mut g.title);
    cut(&mut g.reason);
    for v in [
        &mut g.event_id,
        &mut g.event_time,
        &mut g.event_name,
        &mut g.event_source,
        &mut g.account_id,
        &mut g.region,
        &mut g.principal_type,
        &mut g.principal_arn,
        &mut g.user_name,
        &mut g.source_ip,
        &mut g.user_agent,
        &mut g.error_code,
    ]
    .into_iter()
    .flatten()
    {
        cut(v);
    }
    if let Some(s) = &mut g.summary {
        let more = s.event_names.len().saturating_sub(20);
        s.event_names.truncate(20);
        s.event_names.iter_mut().for_each(cut);
        if more > 0 {
            s.event_names.push(format!("{TRUNCATED} {more} more"));
        }
        for t in [&mut s.first_event_time, &mut s.last_event_time]
            .into_iter()
            .flatten()
        {
            cut(t);
        }
    }
    g
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::PayloadFormat;
    use crate::sink::format::escape::testing::{golden_findings, hostile_burst};

    /// A real finding whose record carries a 1 MB hostile user agent full
    /// of characters that grow when escaped.
    fn huge() -> Finding {
        let mut f = golden_findings().remove(1).1;
        let ua = "\"\\\u{1}<>\u{202e}é".repeat(150_000);
        let mut rec: serde_json::Value = serde_json::from_str(f.event.get()).unwrap();
        rec["userAgent"] = ua.clone().into();
        f.event = RawEvent::from_value(&rec);
        f.user_agent = Some(ua);
        f
    }

    #[test]
    fn a_body_under_the_limit_is_left_alone() {
        let f = golden_findings().remove(0).1;
        for p in [PayloadFormat::Json, PayloadFormat::Ocsf] {
            let whole = p.body(&f, 0);
            assert_eq!(fit(&f, 256 * 1024, |g| p.body(g, 0)).unwrap(), whole);
        }
    }

    #[test]
    fn a_huge_record_is_cut_with_a_marker_and_the_body_stays_json() {
        let f = huge();
        let max = 256 * 1024;
        for p in [PayloadFormat::Json, PayloadFormat::Ocsf] {
            let body = fit(&f, max, |g| p.body(g, 0)).unwrap();
            assert!(body.len() <= max, "{}", body.len());
            // Close to the limit: the cut keeps what fits.
            assert!(body.len() > max - 64, "{}", body.len());
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let event: serde_json::Value = match p {
                PayloadFormat::Json => v["event"].clone(),
                PayloadFormat::Ocsf => {
                    serde_json::from_str(v["raw_data"].as_str().unwrap()).unwrap()
                }
            };
            assert_eq!(event[MARKER], true);
            assert_eq!(event["original_bytes"], f.event.get().len());
            assert!(f.event.get().starts_with(event["head"].as_str().unwrap()));
            let id = match p {
                PayloadFormat::Json => &v["finding_id"],
                PayloadFormat::Ocsf => &v["finding_info"]["uid"],
            };
            assert_eq!(id, f.finding_id.as_str());
        }
    }

    #[test]
    fn huge_fields_are_cut_when_the_record_alone_is_not_enough() {
        let mut f = hostile_burst();
        f.reason = "x\u{1}".repeat(400_000);
        f.principal_arn = Some("é".repeat(400_000));
        let body = fit(&f, 256 * 1024, |g| PayloadFormat::Json.body(g, 0)).unwrap();
        assert!(body.len() <= 256 * 1024);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(v["reason"].as_str().unwrap().ends_with(TRUNCATED));
        assert_eq!(v["finding_id"], f.finding_id.as_str());
        assert!(fit(&f, 100, |g| PayloadFormat::Json.body(g, 0)).is_err());
    }
}
