//! Decode + every rule per envelope, the allow-list lookup at 10,000
//! prefixes, and the dedup cache, over records from the project's seeded
//! generator (benches/support/trailgen.rs: real fixture records with fresh
//! ids, times and addresses; mostly role, user and service calls, few root
//! events).
//! Run: cargo bench --bench detect

#[path = "support/trailgen.rs"]
mod trailgen;

use std::hint::black_box;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rootwatch::decode::{Item, decode_body_filtered, decode_lines};
use rootwatch::dedup::DeliveredCache;
use rootwatch::detect::allowlist::parse_cidr;
use rootwatch::detect::{AllowList, CidrSet, Context, DetectSettings, Detector, Scope};
use rootwatch::event::Record;

const RECORDS: u64 = 20_000;

fn records() -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/third_party");
    let mut g = trailgen::TrailGen::new(&dir, 1).expect("fixtures");
    (0..RECORDS).map(|_| g.next_record()).collect()
}

fn cidrs() -> CidrSet {
    CidrSet::new(
        trailgen::allowlist(trailgen::ALLOWLIST_PREFIXES)
            .iter()
            .map(|c| parse_cidr(c).unwrap()),
    )
}

fn detector() -> Detector {
    Detector::new(DetectSettings {
        context: Context {
            allowlist: AllowList {
                cidrs: cidrs(),
                asns: Default::default(),
                geoip: None,
                scope: Scope::All,
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

/// Decode + rules over one body. `prefiltered`: as the daemon reads a
/// message body, the records the prefilter proves silent are counted and
/// passed over unparsed.
fn run(
    d: &Detector,
    body: &str,
    prefiltered: bool,
    findings: &mut Vec<rootwatch::finding::Finding>,
) -> usize {
    let mut n = 0;
    let parse = |r: &[u8]| !prefiltered || d.may_alert(r);
    decode_body_filtered(body, &parse, &mut |item| match item {
        Ok(Item::Record(r)) => {
            n += 1;
            d.evaluate(&r, findings);
        }
        Ok(Item::Unparsed(_)) => n += 1,
        _ => {}
    });
    n
}

fn decode_detect(c: &mut Criterion) {
    let recs = records();
    let d = detector();
    let log_file = format!("{{\"Records\":[{}]}}", recs.join(","));
    let lines = recs.join("\n");
    let eventbridge: Vec<String> = recs
        .iter()
        .map(|r| format!(r#"{{"version":"0","id":"x","detail-type":"AWS API Call via CloudTrail","source":"aws.iam","account":"111122223333","time":"2024-01-01T00:00:00Z","region":"us-east-1","resources":[],"detail":{r}}}"#))
        .collect();

    let mut g = c.benchmark_group("decode+detect");
    g.throughput(Throughput::Elements(recs.len() as u64));
    let mut findings = Vec::new();
    g.bench_function("raw records", |b| {
        b.iter(|| {
            findings.clear();
            recs.iter()
                .map(|r| run(&d, black_box(r), false, &mut findings))
                .sum::<usize>()
        })
    });
    for (name, prefiltered) in [
        ("eventbridge bodies", false),
        ("eventbridge bodies, prefiltered", true),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                findings.clear();
                eventbridge
                    .iter()
                    .map(|r| run(&d, black_box(r), prefiltered, &mut findings))
                    .sum::<usize>()
            })
        });
    }
    g.bench_function("log file records array", |b| {
        b.iter(|| {
            findings.clear();
            run(&d, black_box(&log_file), false, &mut findings)
        })
    });
    g.bench_function("json lines stream", |b| {
        b.iter(|| {
            findings.clear();
            let mut n = 0;
            decode_lines(black_box(lines.as_bytes()), &mut |_, item| {
                if let Ok(Item::Record(r)) = item {
                    n += 1;
                    d.evaluate(&r, &mut findings);
                }
            })
            .unwrap();
            n
        })
    });
    g.finish();
}

fn cidr_lookup(c: &mut Criterion) {
    let set = cidrs();
    let recs = records();
    let ips: Vec<IpAddr> = recs
        .iter()
        .filter_map(|r| rootwatch::detect::allowlist::source_ip(&Record::parse(r).ok()?))
        .collect();
    let mut g = c.benchmark_group("allowlist");
    g.throughput(Throughput::Elements(ips.len() as u64));
    g.bench_function("contains, 10,000 prefixes", |b| {
        b.iter(|| {
            ips.iter()
                .filter(|&&ip| set.contains(black_box(ip)))
                .count()
        })
    });
    g.finish();
}

fn dedup(c: &mut Criterion) {
    let recs = records();
    let parsed: Vec<Record<'_>> = recs.iter().map(|r| Record::parse(r).unwrap()).collect();
    let mut g = c.benchmark_group("dedup");
    g.throughput(Throughput::Elements(parsed.len() as u64));
    g.bench_function("event key + contains + insert", |b| {
        b.iter(|| {
            let mut cache = DeliveredCache::new(NonZeroUsize::new(100_000).unwrap());
            let mut dups = 0;
            for r in &parsed {
                if let Some(k) = black_box(r).event_key() {
                    if cache.contains(&k) {
                        dups += 1;
                    } else {
                        cache.insert(k);
                    }
                }
            }
            dups
        })
    });
    g.finish();
}

criterion_group!(benches, decode_detect, cidr_lookup, dedup);
criterion_main!(benches);
