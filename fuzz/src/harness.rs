//! The bodies of the fuzz targets, shared with the regression test that
//! replays every kept input on stable (`tests/fuzz_regressions.rs` includes
//! this file). Each one panics on a broken invariant; libFuzzer records the
//! input as a crash.

use std::sync::OnceLock;

use rootwatch::decode::{self, DecodeError, Item};
use rootwatch::detect::{AllowList, CidrSet, Context, DetectSettings, Detector, Scope};
use rootwatch::finding::{Finding, RawEvent, Severity, Summary};
use rootwatch::sink::format::{PayloadFormat, check, fit};

/// Every rule on, with an allow list so the IP rule fires too.
fn detector() -> &'static Detector {
    static D: OnceLock<Detector> = OnceLock::new();
    D.get_or_init(|| {
        Detector::new(DetectSettings {
            context: Context {
                allowlist: AllowList {
                    cidrs: CidrSet::new([
                        "203.0.113.0/24".parse().expect("a CIDR"),
                        "2001:db8::/32".parse().expect("a CIDR"),
                    ]),
                    asns: Default::default(),
                    geoip: None,
                    scope: Scope::All,
                },
                ..Default::default()
            },
            ..Default::default()
        })
    })
}

/// Checks one finding the way every sink would see it: every format
/// (Slack, PagerDuty, Teams, webhook, OCSF), and the JSON and OCSF bodies
/// cut to the SNS and EventBridge limit still valid JSON under it.
fn check_finding(f: &Finding) {
    if let Err(e) = check::all_formats(f) {
        panic!("{e}\nfinding: {}", f.to_json());
    }
    for p in [PayloadFormat::Json, PayloadFormat::Ocsf] {
        const MAX: usize = 256 * 1024;
        let body = fit::fit(f, MAX, |g| p.body(g, 0)).expect("every finding fits once cut");
        assert!(body.len() <= MAX, "{p:?}: {} bytes", body.len());
        serde_json::from_slice::<serde_json::Value>(&body).expect("a cut body is JSON");
    }
    let again: Finding = serde_json::from_str(&f.to_json()).expect("a finding's JSON reads back");
    assert_eq!(again.finding_id, f.finding_id);
}

/// Any bytes, as every input path decodes them (a message body, a stream
/// that may be gzip, JSON lines): decoding never panics, every record can
/// be evaluated by every rule, and every finding formats for every sink
/// within its limits.
pub fn decode_detect(data: &[u8]) {
    let mut evaluate = |item: Result<Item<'_>, DecodeError>| {
        if let Ok(Item::Record(r)) = item {
            let mut findings = Vec::new();
            detector().evaluate(&r, &mut findings);
            findings.iter().for_each(check_finding);
        }
    };
    if let Ok(body) = std::str::from_utf8(data) {
        decode::decode_body(body, &mut evaluate);
    }
    let _ = decode::decode_reader(data, &mut evaluate);
    let _ = decode::decode_lines(data, &mut |_, item| evaluate(item));
}

/// Any finding: every field an event controls is taken from the input
/// (fields separated by NUL bytes, read as lossy UTF-8), and every format
/// must stay within its service's limits and show nothing active.
pub fn formats(data: &[u8]) {
    let (&flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let mut parts = rest
        .split(|&b| b == 0)
        .map(|p| String::from_utf8_lossy(p).into_owned());
    let mut field = || parts.next();
    let severity = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ][usize::from(flags & 3)];
    let mut f = Finding {
        rule: "root-api-call".into(),
        severity,
        title: "Root API call".into(),
        reason: field().unwrap_or_default(),
        finding_id: "0123456789abcdef0123456789abcdef".into(),
        event_id: field(),
        event_time: field(),
        event_name: field(),
        event_source: field(),
        account_id: field(),
        region: field(),
        principal_type: field(),
        principal_arn: field(),
        user_name: field(),
        source_ip: field(),
        user_agent: field(),
        error_code: field(),
        mfa: [None, Some(true), Some(false)][usize::from((flags >> 2) % 3)],
        summary: None,
        mitre_attack: (flags & 0x80 != 0).then_some(rootwatch::detect::mitre::VALID_CLOUD_ACCOUNTS),
        sigma: None,
        correlation: None,
        report_age_seconds: None,
        account_name: None,
        account_ou: None,
        account_tags: None,
        source_ip_context: None,
        requires_root: None,
        expected: None,
        runbook_url: None,
        event: RawEvent::from_string("{}".into()).expect("valid JSON"),
    };
    if flags & 0x20 != 0 {
        // A Sigma rule's text is as hostile as the event's: anyone can
        // write a rule file.
        f.sigma = Some(std::sync::Arc::new(rootwatch::finding::SigmaRuleRef {
            id: field().unwrap_or_default(),
            level: "high".into(),
            author: field(),
            references: field().into_iter().collect(),
            falsepositives: field().into_iter().collect(),
            techniques: field().into_iter().collect(),
        }));
    }
    if flags & 0x40 != 0 {
        let names: Vec<String> = std::iter::from_fn(&mut field).collect();
        f.summary = Some(Summary {
            count: u64::from(flags),
            escalated: u64::from(flags & 1),
            first_event_time: f.event_time.clone(),
            last_event_time: names.first().cloned(),
            event_names: names,
            window_secs: 300,
        });
    }
    check_finding(&f);
}

/// Any bytes as an S3 object (gzip or plain), read as the S3 source reads
/// it: the detector's prefilter decides which records of a CloudTrail log
/// file are parsed at all. Passing a record over must never hide a
/// finding: the findings, in order, equal those of parsing every record.
pub fn s3_object(data: &[u8]) {
    let findings = |filtered: bool| {
        let mut ids = Vec::new();
        let parse = |record: &[u8]| !filtered || detector().may_alert(record);
        let _ = decode::decode_reader_filtered(data, &parse, &mut |item| {
            if let Ok(Item::Record(r)) = item {
                let mut found = Vec::new();
                detector().evaluate(&r, &mut found);
                ids.extend(found.into_iter().map(|f| f.finding_id));
            }
        });
        ids
    };
    assert_eq!(
        findings(true),
        findings(false),
        "the prefilter passed over a record that alerts"
    );
}

/// Any bytes as findings arriving at a throttle with small bounds (two
/// bytes of bounds, then three bytes a step: key and severity, seconds
/// to advance, whether the ticker closes due windows first): every held
/// input comes back exactly once, the bounds hold at every step, and first
/// alerts plus summary counts account for every finding admitted.
pub fn throttle(data: &[u8]) {
    use rootwatch::throttle::{Admit, Throttle};
    use std::collections::BTreeSet;
    use std::time::{Duration, Instant};
    let [w, c, steps @ ..] = data else { return };
    let (max_windows, max_carriers) = (usize::from(w % 5) + 1, usize::from(c % 4));
    let mut t: Throttle<usize> =
        Throttle::with_limits(Duration::from_secs(30), max_windows, max_carriers);
    let t0 = Instant::now();
    let (mut now, mut admitted, mut firsts, mut counted) = (0u64, 0u64, 0u64, 0u64);
    let (mut held, mut back) = (BTreeSet::new(), Vec::new());
    let mut closed = |c: Vec<rootwatch::throttle::Closed<usize>>, back: &mut Vec<usize>| {
        for c in c {
            counted += c.summary.summary.as_ref().expect("a summary").count;
            back.extend(c.carrier);
        }
    };
    for (n, step) in steps.chunks_exact(3).enumerate() {
        now += u64::from(step[1] % 40);
        let at = t0 + Duration::from_secs(now);
        if step[2] & 1 == 1 {
            closed(t.close_due(at), &mut back);
        }
        let raw = format!(
            r#"{{"userIdentity":{{"type":"Root","arn":"arn:aws:iam::111122223333:root"}},"eventName":"ListUsers","sourceIPAddress":"198.51.100.{}","eventTime":"2024-05-01T12:00:00Z","eventID":"e{n}"}}"#,
            step[0] % 6
        );
        let rec = rootwatch::event::Record::parse(&raw).expect("a record");
        let severity = Severity::ALL[usize::from(step[0] >> 6)];
        let f = Finding::new(&rec, "root-api-call", "t", severity, String::new(), None);
        admitted += 1;
        let admit = t.admit(
            &f,
            || {
                held.insert(n);
                n
            },
            at,
        );
        match admit {
            Admit::Send => firsts += 1,
            Admit::Escalated => {}
            Admit::Folded { released } => back.extend(released),
        }
        assert!(t.held_inputs() <= max_carriers, "carrier bound");
        assert!(t.open_windows() <= max_windows, "window bound");
    }
    closed(t.close_all(), &mut back);
    assert_eq!(t.held_inputs(), 0);
    let returned: BTreeSet<usize> = back.iter().copied().collect();
    assert_eq!(returned.len(), back.len(), "an input came back twice");
    assert_eq!(returned, held, "every held input comes back");
    assert_eq!(firsts + counted, admitted, "every finding accounted for");
}
