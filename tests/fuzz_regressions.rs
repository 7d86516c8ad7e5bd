//! Every input the fuzz targets keep (their corpora, seeded with real
//! CloudTrail data, and every crash found, minimised) replayed through the
//! same harness on stable, so a fixed defect stays fixed. `fuzz/README.md`
//! says how to run the fuzzers.

#[allow(dead_code)]
#[path = "../fuzz/src/harness.rs"]
mod harness;

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut out = Vec::new();
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else {
            continue;
        };
        for e in entries {
            let path = e.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

fn replay(target: &str, run: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= 10,
        "{target}: the kept corpus is missing ({} inputs)",
        inputs.len()
    );
    for (path, bytes) in inputs {
        if let Err(e) = std::panic::catch_unwind(|| run(&bytes)) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            panic!("{}: {msg}", path.display());
        }
    }
}

#[test]
fn decode_detect_corpus_and_crashes() {
    replay("decode_detect", harness::decode_detect);
}

#[test]
fn formats_corpus_and_crashes() {
    replay("formats", harness::formats);
}

#[test]
fn s3_object_corpus_and_crashes() {
    replay("s3_object", harness::s3_object);
}

#[test]
fn throttle_corpus_and_crashes() {
    replay("throttle", harness::throttle);
}
