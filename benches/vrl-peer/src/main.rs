//! A Vector Remap Language peer of `rootwatch replay`, for benchmarks: each
//! line of the file is the event `{"message": <line>}` run through one
//! compiled VRL program (rules.vrl) that does `parse_json!(.message)`, the
//! envelopes and the detection rules of benches/peer.py. Around the program
//! this does only what VRL cannot: read the file and the config, and drop
//! repeated event keys across lines (docs/outputs.md, "Duplicates").
//!
//!     vrl-peer [--config CONFIG.toml] FILE
//!
//! Prints one JSON line per finding on stdout and
//! `vrl-peer: N event(s), K finding(s)` on stderr, like peer.py.

#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Instant;

use vrl::compiler::runtime::{Runtime, Terminate};
use vrl::compiler::{TargetValue, TimeZone};
use vrl::diagnostic::Formatter;
use vrl::prelude::Bytes;
use vrl::value::{Secrets, Value};

const RULES: &str = include_str!("../rules.vrl");

/// peer.py's default when the config has no `[dedup] capacity`.
const DEFAULT_DEDUP_CAPACITY: usize = 100_000;

const USAGE: &str = "usage: vrl-peer [--config CONFIG.toml] FILE";

/// What peer.py reads from a rootwatch config, and nothing more.
struct Options {
    cidrs: Vec<String>,
    scope: String,
    excluded: Vec<String>,
    dedup_capacity: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            cidrs: Vec::new(),
            scope: "all".to_owned(),
            excluded: Vec::new(),
            dedup_capacity: DEFAULT_DEDUP_CAPACITY,
        }
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vrl-peer: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (options, file) = match args.as_slice() {
        [flag, config, file] if flag == "--config" => (read_config(config)?, file),
        [file] => (Options::default(), file),
        _ => return Err(USAGE.to_owned()),
    };

    let source = program_source(&options)?;
    let functions = vrl::stdlib::all();
    let started = Instant::now();
    let program = match vrl::compiler::compile(&source, &functions) {
        Ok(compiled) => compiled.program,
        Err(diagnostics) => {
            return Err(format!(
                "rules.vrl does not compile:\n{}",
                Formatter::new(&source, diagnostics)
            ));
        }
    };
    // Compiling is a start-up cost (type checking a long CIDR list takes a
    // while), paid once and included in the process's time: say how much.
    eprintln!(
        "vrl-peer: rules.vrl compiled in {:.2} s",
        started.elapsed().as_secs_f64()
    );

    let raw = File::open(file).map_err(|e| format!("{file}: {e}"))?;
    let mut raw = BufReader::with_capacity(1 << 16, raw);
    // gzip is told by its magic number, as peer.py and rootwatch tell it.
    let gzip = raw
        .fill_buf()
        .map_err(|e| format!("{file}: {e}"))?
        .starts_with(&[0x1f, 0x8b]);
    let input: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::bufread::MultiGzDecoder::new(raw),
        ))
    } else {
        Box::new(raw)
    };

    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let counts = replay(input, &program, options.dedup_capacity, &mut out)
        .map_err(|e| format!("{file}: {e}"))?;
    out.flush().map_err(|e| format!("stdout: {e}"))?;
    eprintln!(
        "vrl-peer: {} event(s), {} finding(s)",
        counts.events, counts.findings
    );
    Ok(())
}

struct Counts {
    events: u64,
    findings: u64,
}

fn replay(
    mut input: Box<dyn BufRead>,
    program: &vrl::compiler::Program,
    capacity: usize,
    out: &mut impl Write,
) -> Result<Counts, String> {
    let mut runtime = Runtime::default();
    let timezone = TimeZone::default();
    let mut seen = Seen::new(capacity);
    let mut counts = Counts {
        events: 0,
        findings: 0,
    };
    let mut line = Vec::new();
    loop {
        line.clear();
        if input
            .read_until(b'\n', &mut line)
            .map_err(|e| e.to_string())?
            == 0
        {
            break;
        }
        if line.trim_ascii().is_empty() {
            continue;
        }
        let mut target = TargetValue {
            value: Value::Object(BTreeMap::from([(
                "message".into(),
                Value::Bytes(Bytes::copy_from_slice(&line)),
            )])),
            metadata: Value::Object(BTreeMap::new()),
            secrets: Secrets::default(),
        };
        let records = match runtime.resolve(&mut target, program, &timezone) {
            Ok(Value::Array(records)) => records,
            Ok(other) => return Err(format!("rules.vrl returned {other}, not an array")),
            // Not JSON: skipped, as peer.py skips it. parse_json! of the
            // line is the program's only call that may abort.
            Err(Terminate::Abort(e) | Terminate::Error(e))
                if e.to_string().contains("\"parse_json\"") =>
            {
                continue;
            }
            Err(e) => return Err(format!("rules.vrl failed: {e}")),
        };
        for record in records {
            let Value::Object(mut record) = record else {
                continue;
            };
            counts.events += 1;
            let key = match record.remove("key") {
                Some(Value::Array(parts)) => Some(
                    parts
                        .into_iter()
                        .map(|p| p.as_bytes().cloned().unwrap_or_default())
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            };
            if key.as_ref().is_some_and(|k| seen.contains(k)) {
                continue;
            }
            let id = record.remove("id").unwrap_or(Value::Null);
            let id = serde_json::to_string(&id).map_err(|e| e.to_string())?;
            let mut alerted = false;
            if let Some(Value::Array(fired)) = record.remove("fired") {
                for rule in fired {
                    alerted = true;
                    counts.findings += 1;
                    let rule = serde_json::to_string(&rule).map_err(|e| e.to_string())?;
                    writeln!(out, "{{\"rule\": {rule}, \"eventID\": {id}}}")
                        .map_err(|e| format!("stdout: {e}"))?;
                }
            }
            // Only an event that alerted enters the cache (docs/outputs.md, "Duplicates").
            if alerted && let Some(key) = key {
                seen.insert(key);
            }
        }
    }
    Ok(counts)
}

/// The event keys of recently seen records, oldest dropped first.
struct Seen {
    keys: HashSet<Vec<Bytes>>,
    order: VecDeque<Vec<Bytes>>,
    capacity: usize,
}

impl Seen {
    fn new(capacity: usize) -> Self {
        Seen {
            keys: HashSet::new(),
            order: VecDeque::new(),
            capacity,
        }
    }

    fn contains(&self, key: &Vec<Bytes>) -> bool {
        self.keys.contains(key)
    }

    fn insert(&mut self, key: Vec<Bytes>) {
        if self.keys.insert(key.clone()) {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }
}

fn read_config(path: &str) -> Result<Options, String> {
    let mut text = String::new();
    File::open(path)
        .and_then(|mut f| f.read_to_string(&mut text))
        .map_err(|e| format!("{path}: {e}"))?;
    let config: toml::Table = text.parse().map_err(|e| format!("{path}: {e}"))?;
    let mut options = Options::default();
    let detect = config.get("detect").and_then(|d| d.as_table());
    if let Some(allow) = detect
        .and_then(|d| d.get("ip_allowlist"))
        .and_then(|a| a.as_table())
    {
        options.cidrs = strings(allow.get("cidrs"), "detect.ip_allowlist.cidrs")?;
        if let Some(scope) = allow.get("scope") {
            options.scope = scope
                .as_str()
                .ok_or("detect.ip_allowlist.scope is not a string")?
                .to_owned();
        }
    }
    options.excluded = strings(
        detect.and_then(|d| d.get("root_api_call_exclude_events")),
        "detect.root_api_call_exclude_events",
    )?;
    if let Some(capacity) = config
        .get("dedup")
        .and_then(|d| d.as_table())
        .and_then(|d| d.get("capacity"))
    {
        options.dedup_capacity = capacity
            .as_integer()
            .and_then(|c| usize::try_from(c).ok())
            .ok_or("dedup.capacity is not a count")?;
    }
    Ok(options)
}

fn strings(value: Option<&toml::Value>, key: &str) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .ok_or_else(|| format!("{key} is not an array of strings"))
}

/// rules.vrl with the config's values written in where the program names
/// them (see the head of rules.vrl for why they are not variables). Comment
/// lines are left as they are.
fn program_source(options: &Options) -> Result<String, String> {
    let cidrs = options
        .cidrs
        .iter()
        .map(|c| network(c))
        .collect::<Result<Vec<_>, _>>()?;
    let values = [
        ("allowed_cidrs", vrl_array(&cidrs)?),
        ("allowlist_enabled", (!cidrs.is_empty()).to_string()),
        ("allowlist_scope", vrl_string(&options.scope)?),
        ("excluded_events", vrl_array(&options.excluded)?),
    ];
    let mut source =
        String::with_capacity(RULES.len() + values.iter().map(|(_, v)| v.len()).sum::<usize>());
    for line in RULES.lines() {
        if line.trim_start().starts_with('#') {
            source.push_str(line);
        } else {
            source.push_str(&substitute(line, &values));
        }
        source.push('\n');
    }
    Ok(source)
}

/// `line` with each whole-word occurrence of a name replaced by its value.
fn substitute(line: &str, values: &[(&str, String)]) -> String {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(start) = rest.find(|c: char| word(c)) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(|c: char| !word(c)).unwrap_or(rest.len());
        let token = &rest[..end];
        match values.iter().find(|(name, _)| *name == token) {
            Some((_, value)) => out.push_str(value),
            None => out.push_str(token),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// A CIDR read as peer.py reads it (Python's `ip_network(c.strip(),
/// strict=False)`): surrounding space ignored, host bits cleared, a bare
/// address taken as a single host. VRL's parser refuses host bits.
fn network(cidr: &str) -> Result<String, String> {
    let bad = || format!("detect.ip_allowlist.cidrs: {cidr:?} is not a CIDR");
    let cidr = cidr.trim();
    let (addr, len) = match cidr.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (cidr, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| bad())?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let len: u32 = match len {
        Some(len) => len.parse().map_err(|_| bad())?,
        None => width,
    };
    if len > width {
        return Err(bad());
    }
    Ok(match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
            format!("{}/{len}", std::net::Ipv4Addr::from(u32::from(a) & mask))
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
            format!("{}/{len}", std::net::Ipv6Addr::from(u128::from(a) & mask))
        }
    })
}

fn vrl_array(items: &[String]) -> Result<String, String> {
    let items = items
        .iter()
        .map(|s| vrl_string(s))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(format!("[{}]", items.join(", ")))
}

/// A VRL raw string literal; the config values this takes (CIDRs, event
/// names, a scope) have no quote or backslash, and one that does is refused
/// rather than escaped.
fn vrl_string(s: &str) -> Result<String, String> {
    if s.contains(['\'', '\\']) {
        return Err(format!("{s:?}: a quote or backslash is not supported"));
    }
    Ok(format!("s'{s}'"))
}

#[cfg(test)]
mod tests {
    use super::{network, substitute};

    #[test]
    fn only_whole_names_are_replaced() {
        let values = [("allowed_cidrs", "[s'10.0.0.0/8']".to_owned())];
        assert_eq!(
            substitute(
                "x = ip_cidr_contains!(allowed_cidrs, my_allowed_cidrs)",
                &values
            ),
            "x = ip_cidr_contains!([s'10.0.0.0/8'], my_allowed_cidrs)"
        );
    }

    #[test]
    fn networks_are_read_as_python_reads_them() {
        assert_eq!(network(" 10.1.2.3/8 ").unwrap(), "10.0.0.0/8");
        assert_eq!(network("192.0.2.7").unwrap(), "192.0.2.7/32");
        assert_eq!(network("0.0.0.0/0").unwrap(), "0.0.0.0/0");
        assert_eq!(network("2001:db8::1/32").unwrap(), "2001:db8::/32");
        assert!(network("10.0.0.0/33").is_err());
        assert!(network("nonsense").is_err());
    }
}
