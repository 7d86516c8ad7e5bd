//! Writes N generated CloudTrail records as JSON lines, and a replay config
//! with the benchmark allow list next to them.
//!
//!     cargo run --example gen-trail -- N OUT.jsonl [SEED] [SHAPE]
//!
//! SHAPE is `mixed` (the default: a real trail's mix, few findings) or
//! `finding-heavy` (95% S3 data events from outside the allow list, 5% root
//! API calls: about one finding per record). Also writes OUT.jsonl.toml:
//! `[detect.ip_allowlist]` under `scope = "all"`, with the 10,000 benchmark
//! prefixes (mixed) or three private ranges (finding-heavy), which
//! benches/peers.sh hands to every engine.

#[path = "../benches/support/trailgen.rs"]
mod trailgen;

use std::io::{BufWriter, Write};
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: gen-trail N OUT.jsonl [SEED] [mixed|finding-heavy]");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("N is a number");
    let seed: u64 = args
        .get(2)
        .map_or(1, |s| s.parse().expect("SEED is a number"));
    let heavy = match args.get(3).map(String::as_str) {
        None | Some("mixed") => false,
        Some("finding-heavy") => true,
        Some(other) => {
            eprintln!("gen-trail: unknown shape `{other}` (mixed, finding-heavy)");
            std::process::exit(2);
        }
    };
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/third_party");
    let mut generator = trailgen::TrailGen::new(&fixtures, seed)?;
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    if heavy {
        generator.write_finding_heavy(n, &mut w)?;
    } else {
        generator.write_lines(n, &mut w)?;
    }
    w.flush()?;

    let cidrs: Vec<String> = if heavy {
        trailgen::FINDING_HEAVY_ALLOWLIST
            .iter()
            .map(|c| c.to_string())
            .collect()
    } else {
        trailgen::allowlist(trailgen::ALLOWLIST_PREFIXES)
    };
    let mut cfg = String::from("[detect.ip_allowlist]\nscope = \"all\"\ncidrs = [\n");
    for c in cidrs {
        cfg.push_str(&format!("  \"{c}\",\n"));
    }
    cfg.push_str("]\n");
    std::fs::write(format!("{out}.toml"), cfg)?;
    eprintln!("wrote {n} records to {out} and the allow list to {out}.toml");
    Ok(())
}
