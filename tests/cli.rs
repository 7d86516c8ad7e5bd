//! The `rootwatch` binary as a user runs it: `replay`, `check-config` and `healthcheck`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rootwatch"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn findings(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(out.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each stdout line is one finding"))
        .collect()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn rules(f: &[serde_json::Value]) -> Vec<String> {
    let mut r: Vec<String> = f
        .iter()
        .map(|f| f["rule"].as_str().unwrap().to_owned())
        .collect();
    r.sort();
    r
}

#[test]
fn replay_shipped_examples() {
    let out = bin()
        .arg("replay")
        .arg(root().join("examples/events"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let f = findings(&out);
    assert_eq!(
        rules(&f),
        [
            "iam-console-login-without-mfa",
            "root-access-key-created",
            "root-access-key-used",
            "root-access-key-used",
            "root-api-call",
            "root-api-call",
            "root-api-call",
            "root-api-call-without-mfa",
            "root-api-call-without-mfa",
            "root-api-call-without-mfa",
            "root-console-login",
            "root-console-login-without-mfa",
        ]
    );
    let err = stderr(&out);
    assert!(
        err.contains("3 file(s), 8 event(s), 12 finding(s), 1 duplicate(s)"),
        "{err}"
    );
    assert!(err.contains("s3_test_event"), "{err}");
}

#[test]
fn replay_all_corpus_record_files_without_errors() {
    let dir = root().join("tests/fixtures/third_party");
    let out = bin()
        .arg("replay")
        .args(
            [
                "aws-docs-examples/records.jsonl",
                "invictus-aws-dataset/records.jsonl",
                "panther-analysis/all_test_logs_records.jsonl",
                "stratus-red-team/detonation_logs.jsonl",
            ]
            .map(|p| dir.join(p)),
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stderr(&out).contains("3672 event(s)"), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("0 decode error(s)"),
        "{}",
        stderr(&out)
    );
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

const ROOT_CALL: &str = r#"{"eventVersion":"1.08","userIdentity":{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"AKIAIOSFODNN7EXAMPLE"},"eventTime":"2024-05-01T12:00:00Z","eventSource":"iam.amazonaws.com","eventName":"ListUsers","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","userAgent":"aws-cli/2.15.0","eventID":"aaaaaaaa-0000-0000-0000-000000000001","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"111122223333"}"#;

#[test]
fn bad_lines_are_named_and_the_rest_processed() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "mixed.jsonl",
        format!(
            "{ROOT_CALL}\nnot json\n{{\"hello\":1}}\n\n{}\n",
            ROOT_CALL.replace("000000000001", "000000000002")
        )
        .as_bytes(),
    );
    let out = bin().arg("replay").arg(&f).output().unwrap();
    assert_eq!(out.status.code(), Some(65));
    let err = stderr(&out);
    assert!(
        err.contains("mixed.jsonl:2: message body: not valid JSON"),
        "{err}"
    );
    assert!(err.contains("mixed.jsonl:3: not a known envelope"), "{err}");
    assert_eq!(findings(&out).len(), 6, "both good records alert: {err}");
    let missing = bin()
        .arg("replay")
        .arg(dir.path().join("nope.json"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(65));
    assert!(
        stderr(&missing).contains("nope.json: cannot read"),
        "{}",
        stderr(&missing)
    );
}

#[test]
fn duplicates_are_dropped_but_distinct_events_sharing_an_id_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let eventbridge = format!(
        r#"{{"version":"0","detail-type":"AWS API Call via CloudTrail","source":"aws.iam","detail":{ROOT_CALL}}}"#
    );
    let later = ROOT_CALL.replace("2024-05-01T12:00:00Z", "2024-05-01T12:05:00Z");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!(r#"{{"Records":[{ROOT_CALL},{later}]}}"#).as_bytes())
        .unwrap();
    write(dir.path(), "a.json.gz", &gz.finish().unwrap());
    write(dir.path(), "b.jsonl", format!("{eventbridge}\n").as_bytes());
    let out = bin().arg("replay").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let f = findings(&out);
    let times: std::collections::BTreeSet<&str> = f
        .iter()
        .map(|f| f["event_time"].as_str().unwrap())
        .collect();
    assert_eq!(
        times.len(),
        2,
        "the later event with the same malformed eventID is distinct"
    );
    assert_eq!(f.len(), 6);
    assert!(stderr(&out).contains("1 duplicate(s)"), "{}", stderr(&out));
}

/// `--format ocsf`: one OCSF Detection Finding per line, the same
/// findings as the default output, each naming its rule and finding id.
#[test]
fn replay_writes_ocsf_detection_findings() {
    let json = bin()
        .arg("replay")
        .arg(root().join("examples/events"))
        .output()
        .unwrap();
    let out = bin()
        .args(["replay", "--format", "ocsf"])
        .arg(root().join("examples/events"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (plain, ocsf) = (findings(&json), findings(&out));
    assert_eq!(plain.len(), ocsf.len());
    for (f, o) in plain.iter().zip(&ocsf) {
        assert_eq!(o["class_uid"], 2004);
        assert_eq!(o["finding_info"]["uid"], f["finding_id"]);
        assert_eq!(o["finding_info"]["analytic"]["name"], f["rule"]);
        let raw: serde_json::Value = serde_json::from_str(o["raw_data"].as_str().unwrap()).unwrap();
        assert_eq!(raw, f["event"]);
    }
    let bad = bin()
        .args(["replay", "--format", "xml", "-"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}

/// `replay -` with `input` on standard input, written from another thread
/// so that a large input cannot fill the pipe while the output does too.
fn replay_stdin(input: Vec<u8>) -> Output {
    let mut child = bin()
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn replay_reads_stdin() {
    let out = replay_stdin(ROOT_CALL.as_bytes().to_vec());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        rules(&findings(&out)),
        [
            "root-access-key-used",
            "root-api-call",
            "root-api-call-without-mfa"
        ]
    );
}

/// Standard input is read in blocks, the file by lines: the same records
/// give the same output, line for line.
#[test]
fn replay_of_stdin_is_replay_of_the_file() {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/third_party/invictus-aws-dataset/records.jsonl");
    let records = std::fs::read(&file).unwrap();
    let from_file = bin().arg("replay").arg(&file).output().unwrap();
    assert_eq!(from_file.status.code(), Some(0), "{}", stderr(&from_file));
    let from_stdin = replay_stdin(records);
    assert_eq!(from_stdin.status.code(), Some(0), "{}", stderr(&from_stdin));
    assert!(!from_file.stdout.is_empty());
    assert!(
        from_stdin.stdout == from_file.stdout,
        "stdin gave {} bytes of findings, the file {}",
        from_stdin.stdout.len(),
        from_file.stdout.len()
    );
}

#[test]
fn replay_uses_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write(
        dir.path(),
        "c.toml",
        b"[detect]\ndisabled = [\"root-api-call\"]\n[detect.ip_allowlist]\ncidrs = [\"203.0.113.0/24\"]\n[[detect.suppress]]\nrule = \"root-access-key-used\"\nevent_name = \"ListUsers\"\n",
    );
    let f = write(dir.path(), "r.json", ROOT_CALL.as_bytes());
    let out = bin()
        .arg("replay")
        .arg("--config")
        .arg(&cfg)
        .arg(&f)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        rules(&findings(&out)),
        ["root-api-call-without-mfa", "source-ip-not-allowed"]
    );
    assert!(stderr(&out).contains("1 suppressed"), "{}", stderr(&out));
}

#[test]
fn check_config() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.toml", b"[[sinks]]\ntype = \"webhook\"\nurl = \"https://soc.example.com/hooks/abc\"\nhmac_secret = \"${RW_TEST_SECRET}\"\n");
    let out = bin()
        .arg("check-config")
        .arg(&good)
        .env("RW_TEST_SECRET", "hunter2-secret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("[dedup]") && text.contains("<redacted>"),
        "{text}"
    );
    assert!(
        !text.contains("hunter2-secret") && !text.contains("hooks/abc"),
        "{text}"
    );

    let out = bin()
        .arg("check-config")
        .arg(&good)
        .env_remove("RW_TEST_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out)
            .contains("`sinks[0].hmac_secret`: environment variable `RW_TEST_SECRET` is not set"),
        "{}",
        stderr(&out)
    );

    let bad = write(
        dir.path(),
        "bad.toml",
        b"[detect.ip_allowlist]\ncidrs = [\"300.1.1.0/24\"]\n",
    );
    let out = bin().arg("check-config").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(78));
    assert!(
        stderr(&out).contains("`detect.ip_allowlist.cidrs[0]`: `300.1.1.0/24`"),
        "{}",
        stderr(&out)
    );

    for shipped in ["config/local.toml", "config/example.toml"] {
        let out = bin()
            .arg("check-config")
            .arg(root().join(shipped))
            .envs([
                ("SLACK_WEBHOOK_URL", "https://hooks.slack.example/T0/B0/x"),
                ("PD_ROUTING_KEY", "k"),
                ("SOC_WEBHOOK_URL", "https://soc.example.com/h"),
                ("ROOTWATCH_HMAC_SECRET", "s"),
                ("SOC_TOKEN", "t"),
            ])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{shipped}: {}", stderr(&out));
    }
    let out = bin()
        .arg("replay")
        .arg("--config")
        .arg(&bad)
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(78));
}

/// A plain http:// sink to a host that is not loopback stops both
/// `check-config` and `run` with exit 78 and a message naming the key, not
/// the URL; `allow_insecure_http = true` lets it through.
#[test]
fn plain_http_sinks_are_refused_unless_loopback_or_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let sinks = "[[sinks]]\ntype = \"stdout\"\n[[sinks]]\ntype = \"slack\"\nurl = \"http://hooks.internal.example/services/T0/B0/tokenInUrl123\"\n";
    let insecure = write(dir.path(), "insecure.toml", sinks.as_bytes());
    for command in ["check-config", "run"] {
        let mut cmd = bin();
        if command == "run" {
            cmd.args(["run", "--config"]);
        } else {
            cmd.arg(command);
        }
        let out = cmd.arg(&insecure).output().unwrap();
        assert_eq!(out.status.code(), Some(78), "{command}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("`sinks[1].url`: plain http:// is only allowed to a loopback host")
                && err.contains("set allow_insecure_http = true"),
            "{command}: {err}"
        );
        assert!(!err.contains("tokenInUrl123"), "{command}: {err}");
    }
    let allowed = write(
        dir.path(),
        "allowed.toml",
        format!("{sinks}allow_insecure_http = true\n[[sinks]]\ntype = \"webhook\"\nurl = \"http://127.0.0.1:8080/hook\"\n").as_bytes(),
    );
    let out = bin().arg("check-config").arg(&allowed).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        String::from_utf8(out.stdout)
            .unwrap()
            .contains("allow_insecure_http = true")
    );
}

/// Answers every connection on a loopback port with `status`, and returns
/// the port; the thread ends with the test process.
fn answering(status: &'static str) -> u16 {
    answering_with(status, "")
}

/// As `answering`, with `body` after the head.
fn answering_with(status: &'static str, body: &'static str) -> u16 {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            // Read the request head up to its blank line before answering.
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn healthcheck_ready_exits_0() {
    let port = answering("200 OK");
    let out = bin()
        .args(["healthcheck", "--url"])
        .arg(format!("http://127.0.0.1:{port}/readyz"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn healthcheck_not_ready_exits_69_naming_url_and_status() {
    let port = answering("503 Service Unavailable");
    let url = format!("http://127.0.0.1:{port}/readyz");
    let out = bin().args(["healthcheck", "--url", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&url) && err.contains("503"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn healthcheck_allow_degraded_passes_a_degraded_daemon_only() {
    let degraded = answering_with(
        "503 Service Unavailable",
        "degraded\nsqs queue 'main': ReceiveMessage failed 3 times in a row\n",
    );
    let url = format!("http://127.0.0.1:{degraded}/readyz");
    // Without the flag a degraded daemon is not healthy...
    let out = bin().args(["healthcheck", "--url", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    // ...with it, it is, and the problem is still shown.
    let out = bin()
        .args(["healthcheck", "--allow-degraded", "--url", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ReceiveMessage failed"),
        "{}",
        stderr(&out)
    );

    for state in ["failed\n", "draining\n", "starting\n", ""] {
        let port = answering_with("503 Service Unavailable", state);
        let url = format!("http://127.0.0.1:{port}/readyz");
        let out = bin()
            .args(["healthcheck", "--allow-degraded", "--url", &url])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(69), "{state:?}: {}", stderr(&out));
    }
}

#[test]
fn healthcheck_nothing_listening_exits_69() {
    // Bind then drop: the port is free and nothing answers on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/readyz");
    let out = bin().args(["healthcheck", "--url", &url]).output().unwrap();
    assert_eq!(out.status.code(), Some(69), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains(&url), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn healthcheck_derives_url_from_config_listen() {
    let port = answering("200 OK");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("rootwatch.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"0.0.0.0:{port}\"\n\n[[sinks]]\ntype = \"stdout\"\n\n[[sources]]\ntype = \"file\"\npaths = [\"/dev/null\"]\n"
        ),
    )
    .unwrap();
    let out = bin()
        .args(["healthcheck", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// Every subcommand finds its config the same ways: an argument or
/// `--config`, else `ROOTWATCH_CONFIG`; a file named on the command line
/// wins over the variable.
#[test]
fn the_config_comes_from_the_command_line_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good.toml",
        b"[detect]\ndisabled = [\"root-console-login\"]\n",
    );
    let bad = write(dir.path(), "bad.toml", b"[dedup]\ncapacity = 0\n");
    let check = |args: &[&std::ffi::OsStr], env: Option<&Path>| {
        let mut cmd = bin();
        cmd.arg("check-config")
            .args(args)
            .env_remove("ROOTWATCH_CONFIG");
        if let Some(e) = env {
            cmd.env("ROOTWATCH_CONFIG", e);
        }
        cmd.output().unwrap()
    };
    let ok = |out: &Output, file: &Path| {
        assert!(out.status.success(), "{}", stderr(out));
        assert!(
            stderr(out).contains(&format!("{}: OK", file.display())),
            "{}",
            stderr(out)
        );
    };
    ok(&check(&[good.as_os_str()], None), &good);
    ok(&check(&["-c".as_ref(), good.as_os_str()], None), &good);
    ok(&check(&[], Some(&good)), &good);
    // The argument wins over a variable left set in the shell.
    ok(&check(&[good.as_os_str()], Some(&bad)), &good);
    let out = check(&[], Some(&bad));
    assert_eq!(out.status.code(), Some(78), "{}", stderr(&out));
    assert!(stderr(&out).contains("dedup.capacity"), "{}", stderr(&out));

    // replay reads ROOTWATCH_CONFIG: the rule it turns off does not fire.
    let event = root().join("examples/events/root-console-login.eventbridge.json");
    let replay = |env: Option<&Path>| {
        let mut cmd = bin();
        cmd.arg("replay").arg(&event).env_remove("ROOTWATCH_CONFIG");
        if let Some(e) = env {
            cmd.env("ROOTWATCH_CONFIG", e);
        }
        rules(&findings(&cmd.output().unwrap()))
    };
    assert!(replay(None).contains(&"root-console-login".to_owned()));
    assert!(!replay(Some(&good)).contains(&"root-console-login".to_owned()));
}

/// Logging is set up in every subcommand, as `--log-format` and
/// `--log-level` say; `completions` prints a script for the shell.
#[test]
fn log_options_apply_to_every_subcommand_and_completions_print() {
    let dir = tempfile::tempdir().unwrap();
    let rule = write(
        dir.path(),
        "windows.yml",
        b"title: Not CloudTrail\nid: 11111111-1111-4111-8111-111111111111\nlogsource:\n  product: windows\ndetection:\n  sel:\n    EventID: 4624\n  condition: sel\n",
    );
    let config = write(
        dir.path(),
        "rootwatch.toml",
        format!(
            "[detect.sigma]\nrules = [\"{}\"]\nskip_other_logsources = true\n",
            rule.display()
        )
        .as_bytes(),
    );
    let event = root().join("examples/events/root-console-login.eventbridge.json");
    let replay = |extra: &[&str]| {
        bin()
            .args(extra)
            .arg("replay")
            .arg("--config")
            .arg(&config)
            .arg(&event)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    // The passed-over rule is a warning, in JSON when asked...
    let out = replay(&["--log-format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let warning = stderr(&out)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "WARN")
        .unwrap_or_else(|| panic!("no JSON warning: {}", stderr(&out)));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .starts_with("Sigma rule passed over"),
        "{warning}"
    );
    // ... as text when asked, and not at all at level error.
    let out = replay(&["--log-format", "text"]);
    assert!(stderr(&out).contains("WARN") && stderr(&out).contains("Sigma rule passed over"));
    assert!(
        !stderr(&out).lines().any(|l| l.starts_with('{')),
        "{}",
        stderr(&out)
    );
    let out = replay(&["--log-level", "error"]);
    assert!(!stderr(&out).contains("passed over"), "{}", stderr(&out));
    let out = replay(&["--log-level", "info,,[bad"]);
    assert_eq!(out.status.code(), Some(64), "{}", stderr(&out));
    assert!(stderr(&out).contains("--log-level"), "{}", stderr(&out));

    let out = bin().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    for word in [
        "_rootwatch()",
        "replay",
        "check-config",
        "test-alert",
        "--log-format",
    ] {
        assert!(script.contains(word), "{word}");
    }
}

/// Findings are JSON lines even when the input was pretty-printed (an
/// EventBridge event saved by hand): the event inside keeps no line break.
#[test]
fn a_pretty_printed_event_gives_one_line_per_finding() {
    let event = root().join("examples/events/root-console-login.eventbridge.json");
    assert!(std::fs::read_to_string(&event).unwrap().contains('\n'));
    let out = bin()
        .arg("replay")
        .arg(&event)
        .env_remove("ROOTWATCH_CONFIG")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let f = findings(&out);
    assert_eq!(
        rules(&f),
        ["root-console-login", "root-console-login-without-mfa"]
    );
    assert_eq!(f[0]["event"]["eventName"], "ConsoleLogin");
}
