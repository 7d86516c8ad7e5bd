//! Writes N generated CloudTrail records as JSON lines, and a replay config
//! with the benchmark allow list next to them.
//!
//!     cargo run --example gen-trail -- N OUT.jsonl [SEED]
//!
//! Also writes OUT.jsonl.toml: `[detect.ip_allowlist]` with the 10,000
//! benchmark prefixes, which benches/peers.sh hands to every engine.

#[path = "../benches/support/trailgen.rs"]
mod trailgen;

use std::io::{BufWriter, Write};
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(n), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: gen-trail N OUT.jsonl [SEED]");
        std::process::exit(2);
    };
    let n: u64 = n.parse().expect("N is a number");
    let seed: u64 = args
        .get(2)
        .map_or(1, |s| s.parse().expect("SEED is a number"));
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/third_party");
    let mut generator = trailgen::TrailGen::new(&fixtures, seed)?;
    let mut w = BufWriter::new(std::fs::File::create(out)?);
    generator.write_lines(n, &mut w)?;
    w.flush()?;

    let mut cfg = String::from("[detect.ip_allowlist]\nscope = \"all\"\ncidrs = [\n");
    for c in trailgen::allowlist(trailgen::ALLOWLIST_PREFIXES) {
        cfg.push_str(&format!("  \"{c}\",\n"));
    }
    cfg.push_str("]\n");
    std::fs::write(format!("{out}.toml"), cfg)?;
    eprintln!("wrote {n} records to {out} and the allow list to {out}.toml");
    Ok(())
}
