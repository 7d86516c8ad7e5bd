//! Decode + every rule over a realistic mix of CloudTrail records: real
//! attack-simulation and rule-test records from tests/fixtures/third_party,
//! most of them ordinary IAM-user and service calls, a few root events.
//! Run: cargo bench --bench detect

use std::hint::black_box;
use std::net::Ipv4Addr;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use rootwatch::decode::{Item, decode_body};
use rootwatch::detect::{AllowList, CidrSet, Context, DetectSettings, Detector, Scope};

fn records() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/third_party");
    let mut out = Vec::new();
    for file in [
        "invictus-aws-dataset/records.jsonl",
        "stratus-red-team/detonation_logs.jsonl",
        "panther-analysis/all_test_logs_records.jsonl",
        "aws-docs-examples/records.jsonl",
    ] {
        let text = std::fs::read_to_string(format!("{dir}/{file}")).expect("fixture");
        out.extend(
            text.lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned),
        );
    }
    out
}

/// 2,000 allow-listed /24s plus the private and documentation ranges (as a
/// deployment allow-lists its VPCs), so the allow-list rule does a real
/// lookup for every human call and most calls pass it, as in production.
fn detector() -> Detector {
    let mut cidrs = CidrSet::default();
    for i in 0..2000u32 {
        let net = Ipv4Net::new(Ipv4Addr::from(0x6400_0000 + (i << 8)), 24).unwrap();
        cidrs.insert(IpNet::V4(net));
    }
    for c in [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "2001:db8::/32",
    ] {
        cidrs.insert(c.parse().unwrap());
    }
    Detector::new(DetectSettings {
        context: Context {
            allowlist: AllowList {
                cidrs,
                scope: Scope::All,
            },
            ..Default::default()
        },
        ..Default::default()
    })
}

fn run(d: &Detector, body: &str, findings: &mut Vec<rootwatch::finding::Finding>) -> usize {
    let mut n = 0;
    decode_body(body, &mut |item| {
        if let Ok(Item::Record(r)) = item {
            n += 1;
            d.evaluate(&r, findings);
        }
    });
    n
}

fn bench(c: &mut Criterion) {
    let recs = records();
    let d = detector();
    let log_file = format!("{{\"Records\":[{}]}}", recs.join(","));
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
                .map(|r| run(&d, black_box(r), &mut findings))
                .sum::<usize>()
        })
    });
    g.bench_function("eventbridge bodies", |b| {
        b.iter(|| {
            findings.clear();
            eventbridge
                .iter()
                .map(|r| run(&d, black_box(r), &mut findings))
                .sum::<usize>()
        })
    });
    g.bench_function("log file records array", |b| {
        b.iter(|| {
            findings.clear();
            run(&d, black_box(&log_file), &mut findings)
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
