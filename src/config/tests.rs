use super::*;

fn env(k: &str) -> Option<String> {
    match k {
        "ROOTWATCH_HMAC_SECRET" => Some("s3cr3t-hmac".into()),
        "SOC_TOKEN" => Some("tok\"en".into()),
        _ => None,
    }
}

fn load_str(text: &str) -> Result<Settings, ConfigError> {
    validate(&parse(text, &env)?)
}

fn err(text: &str) -> String {
    load_str(text).unwrap_err().to_string()
}

const FULL: &str = r#"
[detect]
disabled = ["iam-console-login-without-mfa"]
root_api_call_exclude_events = ["GetAccountSummary"]

[detect.severity]
root-api-call = "high"

[detect.ip_allowlist]
cidrs = ["203.0.113.0/24", "2001:db8::/32"]
scope = "all"

[[detect.suppress]]
rule = "root-api-call"
principal_arn = "arn:aws:iam::111122223333:root"
event_name = ["GetAccountSummary"]

[[sources]]
type = "sqs"
queue_url = "https://sqs.us-east-1.amazonaws.com/111122223333/cloudtrail"
concurrency = 4
wait_time_secs = 20
visibility_timeout_secs = 120

[[sinks]]
type = "webhook"
url = "https://soc.example.com/hooks/rootwatch"
hmac_secret = "${ROOTWATCH_HMAC_SECRET}"
retry_max_secs = 300
headers = { Authorization = "Bearer ${SOC_TOKEN}" }

[[sinks]]
type = "stdout"

[shutdown]
grace_secs = 25
"#;

#[test]
fn the_documented_example_validates() {
    let s = load_str(FULL).unwrap();
    assert!(s.detect.disabled.contains("iam-console-login-without-mfa"));
    assert_eq!(s.detect.severity["root-api-call"], Severity::High);
    assert_eq!(s.detect.context.allowlist.cidrs.len(), 2);
    assert_eq!(s.detect.suppressions.len(), 1);
    assert_eq!(s.sources.len(), 1);
    let SourceSettings::Sqs(q) = &s.sources[0] else {
        panic!()
    };
    assert_eq!(q.name, "sqs-0");
    assert_eq!(q.wait_time, Duration::from_secs(20));
    let SinkKind::Webhook(w) = &s.sinks[0].kind else {
        panic!()
    };
    assert_eq!(w.hmac_secret.as_ref().unwrap().expose(), "s3cr3t-hmac");
    assert_eq!(
        w.headers[0].1.expose(),
        "Bearer tok\"en",
        "secrets with quotes survive"
    );
    assert_eq!(s.sinks[1].name, "stdout-1");
    assert_eq!(s.dedup_capacity.get(), 100_000);
    assert_eq!(s.throttle_window, Some(Duration::from_secs(300)));
    assert_eq!(s.shutdown_grace, Duration::from_secs(25));
}

#[test]
fn empty_file_gives_defaults() {
    let s = load_str("").unwrap();
    assert!(s.sources.is_empty() && s.sinks.is_empty());
    assert_eq!(s.server_listen, Some("0.0.0.0:9102".parse().unwrap()));
}

#[test]
fn unknown_keys_are_named() {
    let e = err("[detect]\ndisabeld = []\n");
    assert!(e.contains("detect") && e.contains("disabeld"), "{e}");
    let e = err(
        "[[sources]]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\nconcurency = 3\n",
    );
    assert!(e.contains("concurency"), "{e}");
    let e = err("[[sinks]]\ntype = \"stdout\"\nurl = \"https://x.example\"\n");
    assert_eq!(e, "`sinks[0].url`: does not apply to a stdout sink");
    let e = err("[[sinks]]\ntype = \"carrier-pigeon\"\n");
    assert!(
        e.contains("sinks[0]") && e.contains("carrier-pigeon"),
        "{e}"
    );
}

#[test]
fn bad_values_are_named_with_the_value() {
    let e = err("[detect.ip_allowlist]\ncidrs = [\"10.0.0.0/8\", \"10.0.0.0/33\"]\n");
    assert_eq!(
        e,
        "`detect.ip_allowlist.cidrs[1]`: `10.0.0.0/33` is not an IPv4/IPv6 address or CIDR"
    );
    let e = err("[detect]\ndisabled = [\"root-login\"]\n");
    assert!(
        e.starts_with("`detect.disabled[0]`: `root-login` is not a rule id"),
        "{e}"
    );
    let e = err("[detect.severity]\nroot-api-call = \"urgent\"\n");
    assert!(
        e.contains("detect.severity.root-api-call") && e.contains("urgent"),
        "{e}"
    );
    let e = err(
        "[[sources]]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\nwait_time_secs = 30\n",
    );
    assert_eq!(
        e,
        "`sources[0].wait_time_secs`: 30 is out of range (0 to 20 seconds)"
    );
    let e = err("[[sources]]\ntype = \"sqs\"\nqueue_url = \"cloudtrail\"\n");
    assert!(
        e.contains("sources[0].queue_url") && e.contains("cloudtrail"),
        "{e}"
    );
    let e = err("[[sinks]]\ntype = \"webhook\"\nurl = \"ftp://x.example/\"\n");
    assert!(e.contains("sinks[0].url"), "{e}");
    let e = err("[[sinks]]\ntype = \"webhook\"\n");
    assert_eq!(e, "`sinks[0].url`: is required for a webhook sink");
    let e = err("[detect.ip_allowlist]\nscope = \"everyone\"\n");
    assert!(
        e.contains("detect.ip_allowlist.scope") && e.contains("everyone"),
        "{e}"
    );
    let e = err("[[detect.suppress]]\nrule = \"root-api-call\"\n");
    assert!(
        e.contains("detect.suppress[0]") && e.contains("detect.disabled"),
        "{e}"
    );
    let e = err("[server]\nlisten = \"localhost\"\n");
    assert!(e.contains("server.listen"), "{e}");
    let e = err("[dedup]\ncapacity = 0\n");
    assert!(e.contains("dedup.capacity"), "{e}");
    let e = err("[dedup]\ncapacity = \"many\"\n");
    assert!(e.contains("dedup.capacity"), "{e}");
}

#[test]
fn interpolation() {
    let e = err("[[sinks]]\ntype = \"webhook\"\nurl = \"${SLACK_URL_UNSET}\"\n");
    assert_eq!(
        e,
        "`sinks[0].url`: environment variable `SLACK_URL_UNSET` is not set"
    );
    let e = err("[[sinks]]\ntype = \"webhook\"\nurl = \"${BROKEN\"\n");
    assert!(e.contains("sinks[0].url"), "{e}");
    assert_eq!(expand("a$$b${SOC_TOKEN}c$", &env).unwrap(), "a$btok\"enc$");
}

#[test]
fn duplicate_names_are_rejected() {
    let e = err(
        "[[sinks]]\ntype = \"stdout\"\nname = \"out\"\n[[sinks]]\ntype = \"stdout\"\nname = \"out\"\n",
    );
    assert_eq!(e, "`sinks[1].name`: `out` is used by another sink");
}

#[test]
fn effective_config_hides_secrets() {
    let raw = parse(FULL, &env).unwrap();
    let text = render_effective(&raw);
    assert!(!text.contains("s3cr3t-hmac"), "{text}");
    assert!(
        !text.contains("tok\\\"en") && !text.contains("tok\"en"),
        "{text}"
    );
    assert!(!text.contains("/hooks/rootwatch"), "{text}");
    assert!(text.contains("soc.example.com"), "{text}");
    assert!(text.contains("capacity = 100000"), "{text}");
    assert!(format!("{:?}", load_str(FULL).unwrap()).contains("<redacted>"));
    assert!(!format!("{:?}", load_str(FULL).unwrap()).contains("s3cr3t-hmac"));
    // What check-config prints parses again to the same settings.
    let again = parse(&text, &env).unwrap();
    assert_eq!(again.sinks.len(), 2);
}

#[test]
fn routing_filters() {
    let s = load_str("[[sinks]]\ntype = \"stdout\"\nmin_severity = \"critical\"\n[[sinks]]\ntype = \"stdout\"\nrules = [\"root-console-login\"]\n").unwrap();
    assert!(s.sinks[0].accepts("root-api-call", Severity::Critical));
    assert!(!s.sinks[0].accepts("root-api-call", Severity::High));
    assert!(s.sinks[1].accepts("root-console-login", Severity::Low));
    assert!(!s.sinks[1].accepts("root-api-call", Severity::Critical));
}
