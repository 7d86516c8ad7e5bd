use super::load::expand;
use super::*;
use crate::finding::Severity;

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
    assert_eq!(q.name, "sqs-cloudtrail");
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
    assert_eq!(s.sinks[1].name, "stdout");
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
fn a_variable_may_have_a_default_or_a_message() {
    let env = |k: &str| match k {
        "SET" => Some("x".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    assert_eq!(
        expand("${SET:-d}/${UNSET:-d}/${EMPTY:-d}", &env).unwrap(),
        "x/d/d"
    );
    assert_eq!(expand("${UNSET:-}|${EMPTY}", &env).unwrap(), "|");
    assert_eq!(expand("${SET:?needed}", &env).unwrap(), "x");
    assert_eq!(
        expand("${UNSET:?the SOC webhook URL}", &env).unwrap_err(),
        "environment variable `UNSET` is not set: the SOC webhook URL"
    );
    assert_eq!(
        expand("${EMPTY:?}", &env).unwrap_err(),
        "environment variable `EMPTY` is not set"
    );
    assert!(expand("${SET:x}", &env).unwrap_err().contains(":-default"));
    let e = err("[[sinks]]\ntype = \"webhook\"\nurl = \"${HOOK:?set HOOK to the SOC webhook}\"\n");
    assert_eq!(
        e,
        "`sinks[0].url`: environment variable `HOOK` is not set: set HOOK to the SOC webhook"
    );
}

#[test]
fn numbers_and_booleans_may_come_from_variables() {
    let env = |k: &str| match k {
        "CAPACITY" => Some("5000".to_owned()),
        "WINDOW" => Some("0".to_owned()),
        "NAME" => Some("12345".to_owned()),
        "WORDS" => Some("many".to_owned()),
        _ => None,
    };
    let raw = parse(
        "[dedup]\ncapacity = \"${CAPACITY}\"\n[throttle]\nwindow_secs = \"${WINDOW}\"\n[[sinks]]\ntype = \"stdout\"\nname = \"${NAME}\"\n[detect.sigma]\nskip_other_logsources = \"${SKIP:-true}\"\n",
        &env,
    )
    .unwrap();
    assert!(raw.detect.sigma.skip_other_logsources);
    // A string setting keeps the text, digits or not.
    assert_eq!(raw.sinks[0].name.as_deref(), Some("12345"));
    let s = validate(&raw).unwrap();
    assert_eq!(s.dedup_capacity.get(), 5000);
    assert_eq!(s.throttle_window, None);
    // Text that is not a number is still named as the wrong type.
    let e = parse("[dedup]\ncapacity = \"${WORDS}\"\n", &env)
        .unwrap_err()
        .to_string();
    assert!(e.contains("dedup.capacity"), "{e}");
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
    let s = load_str("[[sinks]]\ntype = \"stdout\"\nmin_severity = \"critical\"\n[[sinks]]\ntype = \"stdout\"\nname = \"logins\"\nrules = [\"root-console-login\"]\n").unwrap();
    assert!(s.sinks[0].accepts("root-api-call", Severity::Critical));
    assert!(!s.sinks[0].accepts("root-api-call", Severity::High));
    assert!(s.sinks[1].accepts("root-console-login", Severity::Low));
    assert!(!s.sinks[1].accepts("root-api-call", Severity::Critical));
}

#[test]
fn opsgenie_sink() {
    let key = "eb243592-faa2-4ba2-a551-1afdf565c889";
    let s = load_str(&format!(
        "[[sinks]]\ntype = \"opsgenie\"\napi_key = \"{key}\"\n[[sinks]]\ntype = \"opsgenie\"\nname = \"eu\"\napi_key = \"{key}\"\nurl = \"https://api.eu.opsgenie.com/v2/alerts\"\n"
    ))
    .unwrap();
    assert_eq!(s.sinks[0].name, "opsgenie");
    let SinkKind::Opsgenie { url, api_key } = &s.sinks[0].kind else {
        panic!()
    };
    assert_eq!(url.expose(), "https://api.opsgenie.com/v2/alerts");
    assert_eq!(api_key.expose(), key);
    let SinkKind::Opsgenie { url, .. } = &s.sinks[1].kind else {
        panic!()
    };
    assert_eq!(url.expose(), "https://api.eu.opsgenie.com/v2/alerts");
    assert_eq!(s.sinks[1].kind.type_name(), "opsgenie");

    assert_eq!(
        err("[[sinks]]\ntype = \"opsgenie\"\n"),
        "`sinks[0].api_key`: is required for a opsgenie sink"
    );
    for bad in [
        "",
        "short",
        "eb243592faa24ba2a5511afdf565c889",
        "zb243592-faa2-4ba2-a551-1afdf565c889",
    ] {
        let e = err(&format!(
            "[[sinks]]\ntype = \"opsgenie\"\napi_key = \"{bad}\"\n"
        ));
        assert!(e.starts_with("`sinks[0].api_key`: is"), "{bad}: {e}");
    }
    assert_eq!(
        err(&format!(
            "[[sinks]]\ntype = \"opsgenie\"\napi_key = \"{key}\"\nrouting_key = \"x\"\n"
        )),
        "`sinks[0].routing_key`: does not apply to a opsgenie sink"
    );
    assert_eq!(
        err("[[sinks]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/x\"\napi_key = \"k\"\n"),
        "`sinks[0].api_key`: does not apply to a slack sink"
    );
    let e = err(&format!(
        "[[sinks]]\ntype = \"opsgenie\"\napi_key = \"{key}\"\nurl = \"http://opsgenie.example/v2/alerts\"\n"
    ));
    assert!(e.starts_with("`sinks[0].url`: plain http://"), "{e}");
    // check-config shows no key.
    let raw = crate::config::parse(
        &format!("[[sinks]]\ntype = \"opsgenie\"\napi_key = \"{key}\"\n"),
        &|_| None,
    )
    .unwrap();
    let shown = crate::config::render_effective(&raw);
    assert!(!shown.contains(key), "{shown}");
    assert!(shown.contains("api_key = \"<redacted>\""), "{shown}");
}

#[test]
fn chat_and_paging_sinks() {
    let key = "0123456789abcdef0123456789ABCDEF";
    let s = load_str(&format!(
        "[[sinks]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T000/B000/XXXX\"\nrules = [\"root-console-login\"]\n[[sinks]]\ntype = \"pagerduty\"\nrouting_key = \"{key}\"\nmin_severity = \"critical\"\n[[sinks]]\ntype = \"teams\"\nurl = \"https://example.webhook.office.com/workflows/abc\"\n"
    ))
    .unwrap();
    assert_eq!(s.sinks[0].name, "slack-hooks.slack.com");
    assert_eq!(s.sinks[1].name, "pagerduty");
    assert_eq!(s.sinks[2].name, "teams-example.webhook.office.com");
    let SinkKind::PagerDuty { url, routing_key } = &s.sinks[1].kind else {
        panic!()
    };
    assert_eq!(url, "https://events.pagerduty.com/v2/enqueue");
    assert_eq!(routing_key.expose(), key);
    assert_eq!(s.sinks[1].min_severity, Severity::Critical);
    assert_eq!(s.sinks[2].kind.type_name(), "teams");

    assert_eq!(
        err("[[sinks]]\ntype = \"pagerduty\"\n"),
        "`sinks[0].routing_key`: is required for a pagerduty sink"
    );
    let e = err("[[sinks]]\ntype = \"pagerduty\"\nrouting_key = \"short\"\n");
    assert!(
        e.starts_with("`sinks[0].routing_key`: is not a PagerDuty"),
        "{e}"
    );
    assert_eq!(
        err(
            "[[sinks]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/x\"\nhmac_secret = \"s\"\n"
        ),
        "`sinks[0].hmac_secret`: does not apply to a slack sink"
    );
    assert_eq!(
        err("[[sinks]]\ntype = \"teams\"\n"),
        "`sinks[0].url`: is required for a teams sink"
    );

    let raw = parse(&format!("[[sinks]]\ntype = \"pagerduty\"\nrouting_key = \"{key}\"\n[[sinks]]\ntype = \"slack\"\nurl = \"https://hooks.slack.com/services/T000/B000/XXXX\"\n"), &env).unwrap();
    let text = render_effective(&raw);
    assert!(!text.contains(key) && !text.contains("T000/B000"), "{text}");
}

// ---------------------------------------------------------------- cloudwatch_logs source

const CWL: &str =
    "[[sources]]\ntype = \"cloudwatch_logs\"\ncheckpoint_path = \"/var/lib/rootwatch/cwl.json\"\n";

/// The error for a cloudwatch_logs source with `extra` keys.
fn cwl_err(extra: &str) -> String {
    err(&format!("{CWL}{extra}"))
}

fn cwl(extra: &str) -> CloudwatchLogsSettings {
    match load_str(&format!("{CWL}{extra}"))
        .unwrap()
        .sources
        .remove(0)
    {
        SourceSettings::CloudwatchLogs(c) => c,
        other => panic!("{other:?}"),
    }
}

#[test]
fn cloudwatch_logs_defaults() {
    let c = cwl("log_groups = [\"aws-cloudtrail-logs-111122223333\"]\n");
    assert_eq!(c.name, "cloudwatch_logs-aws-cloudtrail-logs-111122223333");
    assert_eq!(
        c.log_groups,
        LogGroups::Names(vec!["aws-cloudtrail-logs-111122223333".into()])
    );
    assert_eq!(c.poll_interval, Duration::from_secs(10));
    assert_eq!(c.lookback, Duration::from_secs(300));
    assert_eq!(c.full_read_interval, Duration::from_secs(60));
    assert_eq!(c.discovery_interval, Duration::from_secs(300));
    assert_eq!(
        c.checkpoint,
        CheckpointStore::File(PathBuf::from("/var/lib/rootwatch/cwl.json"))
    );
    assert_eq!(c.start, Start::Now);
    assert_eq!(c.max_requests_per_sec.get(), 4);
    assert_eq!(c.filter_pattern, None);
}

#[test]
fn cloudwatch_logs_prefix_start_and_filter() {
    let c = cwl(
        "name = \"trail\"\nlog_group_prefix = \"aws-cloudtrail\"\ndiscovery_interval_secs = 60\nstart = \"2024-05-01T00:00:00+02:00\"\nlookback_secs = 1\nmax_requests_per_sec = 2\nfilter_pattern = '{ $.userIdentity.type = \"Root\" }'\n",
    );
    assert_eq!(c.name, "trail");
    assert_eq!(c.log_groups, LogGroups::Prefix("aws-cloudtrail".into()));
    assert_eq!(c.discovery_interval, Duration::from_secs(60));
    let Start::At(t) = c.start else { panic!() };
    assert_eq!(t.to_rfc3339(), "2024-04-30T22:00:00+00:00");
    assert_eq!(c.lookback, Duration::from_secs(1));
    assert_eq!(c.max_requests_per_sec.get(), 2);
    assert_eq!(
        c.filter_pattern.as_deref(),
        Some(r#"{ $.userIdentity.type = "Root" }"#)
    );
}

#[test]
fn cloudwatch_logs_needs_exactly_one_of_groups_and_prefix() {
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\nlog_group_prefix = \"a\"\n"),
        "`sources[0].log_group_prefix`: cannot be combined with `log_groups`: set exactly one of them"
    );
    assert_eq!(
        cwl_err(""),
        "`sources[0].log_groups`: is required for a cloudwatch_logs source (or set `log_group_prefix`)"
    );
}

#[test]
fn cloudwatch_logs_group_list_errors() {
    assert_eq!(
        cwl_err("log_groups = []\n"),
        "`sources[0].log_groups`: needs at least one log group name"
    );
    assert_eq!(
        cwl_err("log_groups = [\"ok/group\", \"not a group\"]\n"),
        "`sources[0].log_groups[1]`: `not a group` is not a log group name (1 to 512 letters, digits, `_`, `-`, `/`, `.` or `#`)"
    );
    assert_eq!(
        cwl_err("log_groups = [\"a\", \"a\"]\n"),
        "`sources[0].log_groups[1]`: `a` is listed twice"
    );
}

#[test]
fn cloudwatch_logs_prefix_errors() {
    assert_eq!(
        cwl_err("log_group_prefix = \"\"\n"),
        "`sources[0].log_group_prefix`: is empty: it would follow every log group in the account and region"
    );
    let e = cwl_err("log_group_prefix = \"aws*\"\n");
    assert!(
        e.starts_with("`sources[0].log_group_prefix`: `aws*` is not a log group name"),
        "{e}"
    );
}

#[test]
fn cloudwatch_logs_checkpoint_path_errors() {
    let e = err("[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\n");
    assert_eq!(
        e,
        "`sources[0].checkpoint_path`: is required for a cloudwatch_logs source (or set `checkpoint_table`)"
    );
    let e = err(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\ncheckpoint_path = \"\"\n",
    );
    assert_eq!(e, "`sources[0].checkpoint_path`: is empty");
    let e = err(
        "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\ncheckpoint_path = \"/var/lib/rootwatch/\"\n",
    );
    assert_eq!(
        e,
        "`sources[0].checkpoint_path`: `/var/lib/rootwatch/` is a directory; name the checkpoint file"
    );
}

#[test]
fn cloudwatch_logs_start_errors() {
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\nstart = \"yesterday\"\n"),
        "`sources[0].start`: `yesterday` is not \"now\" or an RFC 3339 time such as 2024-05-01T00:00:00Z"
    );
    let e = cwl_err("log_groups = [\"a\"]\nstart = \"2024-05-01\"\n");
    assert!(e.starts_with("`sources[0].start`: `2024-05-01`"), "{e}");
}

#[test]
fn cloudwatch_logs_rate_errors() {
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\nmax_requests_per_sec = 0\n"),
        "`sources[0].max_requests_per_sec`: 0 is out of range (1 to 50)"
    );
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\nmax_requests_per_sec = 51\n"),
        "`sources[0].max_requests_per_sec`: 51 is out of range (1 to 50)"
    );
}

#[test]
fn cloudwatch_logs_interval_errors() {
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\npoll_interval_secs = 0\n"),
        "`sources[0].poll_interval_secs`: 0 is out of range (1 to 3600 seconds)"
    );
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\nlookback_secs = 86401\n"),
        "`sources[0].lookback_secs`: 86401 is out of range (1 to 86400 seconds)"
    );
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\nfull_read_interval_secs = 0\n"),
        "`sources[0].full_read_interval_secs`: 0 is out of range (1 to 86400 seconds)"
    );
    assert!(
        cwl_err("log_groups = [\"a\"]\nlookback_secs = 0\n")
            .starts_with("`sources[0].lookback_secs`: 0 would pass over every event made searchable after its own time"),
    );
    assert_eq!(
        cwl_err("log_group_prefix = \"a\"\ndiscovery_interval_secs = 0\n"),
        "`sources[0].discovery_interval_secs`: 0 is out of range (1 to 86400 seconds)"
    );
}

#[test]
fn cloudwatch_logs_filter_pattern_errors() {
    assert_eq!(
        cwl_err("log_groups = [\"a\"]\nfilter_pattern = \" \"\n"),
        "`sources[0].filter_pattern`: is empty; leave it out to read every event"
    );
}

#[test]
fn cloudwatch_logs_name_and_unknown_key_errors() {
    let e = cwl_err("log_groups = [\"a\"]\nname = \"cloud watch\"\n");
    assert!(e.starts_with("`sources[0].name`: `cloud watch`"), "{e}");
    let e = cwl_err("log_group = [\"a\"]\n");
    assert!(e.contains("sources[0]") && e.contains("log_group"), "{e}");
    let e = err(&format!(
        "{CWL}log_groups = [\"a\"]\n{CWL}log_groups = [\"b\"]\nname = \"cloudwatch_logs-a\"\n"
    ));
    assert_eq!(
        e,
        "2 problems:\n  `sources[1].name`: `cloudwatch_logs-a` is used by another source\n  `sources[1].checkpoint_path`: `/var/lib/rootwatch/cwl.json` is used by another source"
    );
}

#[test]
fn cloudwatch_logs_effective_config_shows_defaults_and_parses_again() {
    let raw = parse(&format!("{CWL}log_groups = [\"a\"]\n"), &env).unwrap();
    let text = render_effective(&raw);
    for key in [
        "poll_interval_secs = 10",
        "lookback_secs = 300",
        "start = \"now\"",
        "max_requests_per_sec = 4",
        "discovery_interval_secs = 300",
    ] {
        assert!(text.contains(key), "{key}: {text}");
    }
    validate(&parse(&text, &env).unwrap()).unwrap();
}

#[test]
fn two_sources_cannot_share_a_checkpoint_file() {
    let one = format!("{CWL}log_groups = [\"a\"]\n");
    let e = err(&format!(
        "{one}{}",
        one.replace("[[sources]]", "[[sources]]\nname = \"second\"")
    ));
    assert_eq!(
        e,
        "`sources[1].checkpoint_path`: `/var/lib/rootwatch/cwl.json` is used by another source"
    );
}

#[test]
fn dead_letter_paths() {
    let c = cwl("log_groups = [\"a\"]\n");
    assert_eq!(
        c.dead_letter,
        DeadLetterDest::File(PathBuf::from("/var/lib/rootwatch/cwl.dead-letter.jsonl")),
        "next to the checkpoint by default"
    );
    let c = cwl("log_groups = [\"a\"]\ndead_letter_path = \"/data/dl.jsonl\"\n");
    assert_eq!(
        c.dead_letter,
        DeadLetterDest::File(PathBuf::from("/data/dl.jsonl"))
    );
    let q = "https://sqs.eu-west-1.amazonaws.com/111122223333/rootwatch-dead-letters";
    let c = cwl(&format!(
        "log_groups = [\"a\"]\ndead_letter_queue_url = \"{q}\"\n"
    ));
    assert_eq!(c.dead_letter, DeadLetterDest::Queue(q.to_owned()));
    assert_eq!(
        err(&format!(
            "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\ncheckpoint_path = \"/c.json\"\ndead_letter_path = \"/d.jsonl\"\ndead_letter_queue_url = \"{q}\"\n"
        )),
        "`sources[0].dead_letter_queue_url`: give either it or `dead_letter_path`, not both"
    );
    assert!(
        err("[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\ncheckpoint_path = \"/c.json\"\ndead_letter_queue_url = \"rootwatch-dead-letters\"\n")
            .starts_with("`sources[0].dead_letter_queue_url`: `rootwatch-dead-letters` is not a URL"),
    );
    let file = |extra: &str| {
        let s = load_str(&format!(
            "[[sources]]\ntype = \"file\"\npaths = [\"/in\"]\n{extra}"
        ))
        .unwrap();
        match &s.sources[0] {
            SourceSettings::File(f) => f.dead_letter_path.clone(),
            _ => unreachable!(),
        }
    };
    assert_eq!(file(""), None, "none by default for a file source");
    assert_eq!(
        file("dead_letter_path = \"/data/dl.jsonl\"\n"),
        Some(PathBuf::from("/data/dl.jsonl"))
    );
    assert_eq!(
        err("[[sources]]\ntype = \"file\"\npaths = [\"/in\"]\ndead_letter_path = \"\"\n"),
        "`sources[0].dead_letter_path`: is empty"
    );
    assert_eq!(
        err(
            "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\ncheckpoint_path = \"/c.json\"\ndead_letter_path = \"/data/\"\n"
        ),
        "`sources[0].dead_letter_path`: `/data/` is a directory; name the dead-letter file"
    );
}

const SQS: &str =
    "[[sources]]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/1/q\"\n";

fn sqs(extra: &str) -> Result<SqsSettings, ConfigError> {
    let s = load_str(&format!("{SQS}{extra}"))?;
    let SourceSettings::Sqs(q) = s.sources.into_iter().next().unwrap() else {
        panic!("not an SQS source")
    };
    Ok(q)
}

#[test]
fn sqs_object_limits_default_and_bounds() {
    let q = sqs("").unwrap();
    assert_eq!(
        q.limits,
        ObjectLimits {
            max_object_bytes: 256 * 1024 * 1024,
            max_record_bytes: 2 * 1024 * 1024,
            max_objects_per_message: 100,
            max_compressed_object_bytes: 64 * 1024 * 1024,
            max_object_read: Duration::from_secs(300),
        }
    );
    assert_eq!(q.allowed_buckets, None);
    assert_eq!(q.expected_bucket_owner, None);
    let q =
        sqs("max_object_bytes = 4194304\nmax_record_bytes = 65536\nmax_objects_per_message = 3\n")
            .unwrap();
    assert_eq!(q.limits.max_object_bytes, 4_194_304);
    assert_eq!(q.limits.max_record_bytes, 65_536);
    assert_eq!(q.limits.max_objects_per_message, 3);
    let q = sqs("max_compressed_object_bytes = 1048576\nmax_object_read_secs = 30\n").unwrap();
    assert_eq!(q.limits.max_compressed_object_bytes, 1_048_576);
    assert_eq!(q.limits.max_object_read, Duration::from_secs(30));
    for (extra, key) in [
        ("max_object_bytes = 1000\n", "sources[0].max_object_bytes"),
        ("max_record_bytes = 100\n", "sources[0].max_record_bytes"),
        (
            "max_object_bytes = 2097152\nmax_record_bytes = 4194304\n",
            "sources[0].max_record_bytes",
        ),
        (
            "max_objects_per_message = 0\n",
            "sources[0].max_objects_per_message",
        ),
        (
            "max_compressed_object_bytes = 1000\n",
            "sources[0].max_compressed_object_bytes",
        ),
        (
            "max_compressed_object_bytes = 68719476737\n",
            "sources[0].max_compressed_object_bytes",
        ),
        (
            "max_object_read_secs = 0\n",
            "sources[0].max_object_read_secs",
        ),
        (
            "max_object_read_secs = 3601\n",
            "sources[0].max_object_read_secs",
        ),
    ] {
        let e = sqs(extra).unwrap_err().to_string();
        assert!(e.starts_with(&format!("`{key}`: ")), "{extra}: {e}");
    }
}

#[test]
fn sqs_allowed_buckets_and_owner() {
    let q = sqs("allowed_buckets = [\"org-trail\", \"audit.logs-2\"]\nexpected_bucket_owner = \"111122223333\"\n")
        .unwrap();
    let allowed = q.allowed_buckets.unwrap();
    assert!(allowed.contains("org-trail") && allowed.contains("audit.logs-2"));
    assert_eq!(allowed.len(), 2);
    assert_eq!(q.expected_bucket_owner.as_deref(), Some("111122223333"));
    for (extra, key) in [
        ("allowed_buckets = []\n", "sources[0].allowed_buckets"),
        (
            "allowed_buckets = [\"ok-bucket\", \"Bad_Bucket\"]\n",
            "sources[0].allowed_buckets[1]",
        ),
        (
            "allowed_buckets = [\"-x-\"]\n",
            "sources[0].allowed_buckets[0]",
        ),
        (
            "expected_bucket_owner = \"1111\"\n",
            "sources[0].expected_bucket_owner",
        ),
        (
            "expected_bucket_owner = \"11112222333a\"\n",
            "sources[0].expected_bucket_owner",
        ),
    ] {
        let e = sqs(extra).unwrap_err().to_string();
        assert!(e.starts_with(&format!("`{key}`: ")), "{extra}: {e}");
    }
}

/// Plain http:// leaves alerts and the URL's tokens readable on the
/// network: refused for every sink kind with a URL unless the host is
/// loopback or the sink opts in, and the error never quotes the URL.
#[test]
fn plain_http_sinks_only_to_loopback_unless_allowed() {
    let key = "0123456789abcdef0123456789abcdef";
    let kinds = [
        ("webhook", String::new()),
        ("slack", String::new()),
        ("teams", String::new()),
        ("pagerduty", format!("routing_key = \"{key}\"\n")),
    ];
    for (kind, extra) in &kinds {
        let sink = |url: &str, more: &str| {
            format!("[[sinks]]\ntype = \"{kind}\"\nurl = \"{url}\"\n{extra}{more}")
        };
        for url in [
            "http://soc.example.com/hooks/tok3nInPath",
            "http://10.0.0.8:8080/hook",
            "http://[2001:db8::1]/hook",
            "http://localhost.example.com/hook",
            "http://128.0.0.1/hook",
        ] {
            let e = err(&format!("[[sinks]]\ntype = \"stdout\"\n{}", sink(url, "")));
            assert!(
                e.starts_with("`sinks[1].url`: plain http:// is only allowed to a loopback host"),
                "{kind} {url}: {e}"
            );
            assert!(e.contains("allow_insecure_http = true"), "{e}");
            assert!(!e.contains("tok3nInPath") && !e.contains("example"), "{e}");
            let s = load_str(&sink(url, "allow_insecure_http = true\n"))
                .unwrap_or_else(|e| panic!("{kind} {url} with allow_insecure_http: {e}"));
            assert_eq!(s.sinks[0].kind.type_name(), *kind);
        }
        for url in [
            "http://127.0.0.1:8080/hook",
            "http://127.9.8.7/hook",
            "http://[::1]:9000/hook",
            "http://localhost/hook",
            "http://LOCALHOST./hook",
            "https://soc.example.com/hook",
            "https://10.0.0.8/hook",
        ] {
            load_str(&sink(url, "")).unwrap_or_else(|e| panic!("{kind} {url}: {e}"));
        }
    }
    // Only sinks with a URL take the setting.
    assert_eq!(
        err("[[sinks]]\ntype = \"stdout\"\nallow_insecure_http = true\n"),
        "`sinks[0].allow_insecure_http`: does not apply to a stdout sink"
    );
    // check-config's effective config shows it and parses again.
    let raw = parse(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"http://relay.internal/hook\"\nallow_insecure_http = true\n",
        &env,
    )
    .unwrap();
    let text = render_effective(&raw);
    assert!(text.contains("allow_insecure_http = true"), "{text}");
    validate(&parse(&text, &env).unwrap()).unwrap();
}

#[test]
fn aws_sinks_and_payload_formats() {
    let s = load_str(
        r#"
[[sinks]]
type = "sns"
topic_arn = "arn:aws:sns:eu-west-1:111122223333:soc-alerts"
[[sinks]]
type = "eventbridge"
event_bus = "arn:aws:events:us-east-2:111122223333:event-bus/soc"
region = "us-east-2"
format = "ocsf"
[[sinks]]
type = "eventbridge"
event_bus = "default"
[[sinks]]
type = "webhook"
url = "https://siem.example.com/ingest"
format = "ocsf"
"#,
    )
    .unwrap();
    let SinkKind::Sns(sns) = &s.sinks[0].kind else {
        panic!()
    };
    assert_eq!(
        sns.topic_arn,
        "arn:aws:sns:eu-west-1:111122223333:soc-alerts"
    );
    // The topic ARN's region is the default; no role unless one is named.
    assert_eq!(
        (sns.aws.region.as_deref(), sns.format),
        (Some("eu-west-1"), PayloadFormat::Json)
    );
    assert_eq!(sns.aws.role, None);
    assert_eq!(s.sinks[0].name, "sns-soc-alerts");
    let SinkKind::EventBridge(eb) = &s.sinks[1].kind else {
        panic!()
    };
    assert_eq!(eb.aws.region.as_deref(), Some("us-east-2"));
    let SinkKind::EventBridge(named) = &s.sinks[2].kind else {
        panic!()
    };
    assert_eq!(named.aws.region, None, "a bus name names no region");
    assert_eq!(eb.format, PayloadFormat::Ocsf);
    let SinkKind::Webhook(w) = &s.sinks[3].kind else {
        panic!()
    };
    assert_eq!(w.format, PayloadFormat::Ocsf);

    // A role, as for a source; check-config hides the external id.
    let text = "[[sinks]]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:eu-west-1:111122223333:soc\"\n\
                role_arn = \"arn:aws:iam::111122223333:role/rootwatch-publish\"\n\
                external_id = \"soc-7781\"\nsession_name = \"rootwatch-alerts\"\n";
    let s = load_str(text).unwrap();
    let SinkKind::Sns(sns) = &s.sinks[0].kind else {
        panic!()
    };
    assert_eq!(
        sns.aws.role,
        Some(crate::aws::Role {
            arn: "arn:aws:iam::111122223333:role/rootwatch-publish".into(),
            external_id: Some("soc-7781".into()),
            session_name: "rootwatch-alerts".into(),
        })
    );
    let shown = render_effective(&parse(text, &env).unwrap());
    assert!(!shown.contains("soc-7781"), "{shown}");

    for (sink, key, says) in [
        (
            "type = \"sns\"\ntopic_arn = \"arn:aws:sns:eu-west-1:111122223333:t\"\nregion = \"us-east-1\"",
            "sinks[0].region",
            "differs from `eu-west-1`, the region `topic_arn` names",
        ),
        (
            "type = \"eventbridge\"\nevent_bus = \"soc\"\nrole_arn = \"arn:aws:iam::111122223333:user/x\"",
            "sinks[0].role_arn",
            "is not an IAM role ARN",
        ),
        (
            "type = \"sns\"\ntopic_arn = \"arn:aws:sns:eu-west-1:111122223333:t\"\nexternal_id = \"x1\"",
            "sinks[0].external_id",
            "only applies with `role_arn`",
        ),
        (
            "type = \"webhook\"\nurl = \"https://x.example\"\nrole_arn = \"arn:aws:iam::111122223333:role/r\"",
            "sinks[0].role_arn",
            "does not apply to a webhook sink",
        ),
        ("type = \"sns\"", "sinks[0].topic_arn", "is required"),
        (
            "type = \"sns\"\ntopic_arn = \"soc\"",
            "sinks[0].topic_arn",
            "not an SNS topic ARN",
        ),
        (
            "type = \"sns\"\ntopic_arn = \"arn:aws:sqs:eu-west-1:111122223333:q\"",
            "sinks[0].topic_arn",
            "not an SNS topic ARN",
        ),
        (
            "type = \"eventbridge\"",
            "sinks[0].event_bus",
            "is required",
        ),
        (
            "type = \"eventbridge\"\nevent_bus = \"arn:aws:events:eu-west-1:111122223333:rule/x\"",
            "sinks[0].event_bus",
            "not an event bus",
        ),
        (
            "type = \"eventbridge\"\nevent_bus = \"soc\"\nregion = \"mars-1\"",
            "sinks[0].region",
            "not an AWS region",
        ),
        (
            "type = \"eventbridge\"\nevent_bus = \"soc\"\nformat = \"xml\"",
            "sinks[0].format",
            "not a payload format (json, ocsf)",
        ),
        (
            "type = \"slack\"\nurl = \"https://hooks.slack.com/x\"\nformat = \"ocsf\"",
            "sinks[0].format",
            "does not apply to a slack sink",
        ),
        (
            "type = \"sns\"\ntopic_arn = \"arn:aws:sns:eu-west-1:111122223333:t\"\nurl = \"https://x.example\"",
            "sinks[0].url",
            "does not apply to a sns sink",
        ),
        (
            "type = \"webhook\"\nurl = \"https://x.example\"\ntopic_arn = \"arn:aws:sns:eu-west-1:111122223333:t\"",
            "sinks[0].topic_arn",
            "does not apply to a webhook sink",
        ),
    ] {
        let e = err(&format!("[[sinks]]\n{sink}\n"));
        assert!(
            e.contains(&format!("`{key}`")) && e.contains(says),
            "{sink}: {e}"
        );
    }
}

// ---------------------------------------------------------------- per-source AWS settings

fn sqs_at(url: &str, extra: &str) -> Result<SqsSettings, ConfigError> {
    let s = load_str(&format!(
        "[[sources]]\ntype = \"sqs\"\nqueue_url = \"{url}\"\n{extra}"
    ))?;
    match s.sources.into_iter().next() {
        Some(SourceSettings::Sqs(q)) => Ok(q),
        other => panic!("{other:?}"),
    }
}

#[test]
fn sqs_region_defaults_to_the_queue_urls() {
    let q = sqs_at("https://sqs.eu-west-1.amazonaws.com/111122223333/ct", "").unwrap();
    assert_eq!(q.aws.region.as_deref(), Some("eu-west-1"));
    assert_eq!(q.aws.role, None);
    let q = sqs_at("https://ap-south-1.queue.amazonaws.com/111122223333/ct", "").unwrap();
    assert_eq!(q.aws.region.as_deref(), Some("ap-south-1"));
    // An emulator's URL names no region: the credential chain's applies...
    let q = sqs_at("http://127.0.0.1:4566/111122223333/ct", "").unwrap();
    assert_eq!(q.aws.region, None);
    // ... unless the source names one.
    let q = sqs_at(
        "http://127.0.0.1:4566/111122223333/ct",
        "region = \"eu-central-1\"\n",
    )
    .unwrap();
    assert_eq!(q.aws.region.as_deref(), Some("eu-central-1"));
}

#[test]
fn region_errors_name_the_key() {
    let e = sqs_at(
        "https://sqs.eu-west-1.amazonaws.com/111122223333/ct",
        "region = \"us-east-1\"\n",
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        "`sources[0].region`: `us-east-1` differs from `eu-west-1`, the region `queue_url` names"
    );
    let e = sqs_at("http://127.0.0.1:4566/1/q", "region = \"Ireland\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "`sources[0].region`: `Ireland` is not an AWS region name such as eu-west-1"
    );
    let e = cwl_err("log_groups = [\"a\"]\nregion = \"eu-west\"\n");
    assert!(e.starts_with("`sources[0].region`: `eu-west`"), "{e}");
}

#[test]
fn role_settings() {
    let url = "https://sqs.eu-west-1.amazonaws.com/111122223333/ct";
    let q = sqs_at(
        url,
        "role_arn = \"arn:aws:iam::444455556666:role/rootwatch-reader\"\n",
    )
    .unwrap();
    assert_eq!(
        q.aws.role,
        Some(crate::aws::Role {
            arn: "arn:aws:iam::444455556666:role/rootwatch-reader".into(),
            external_id: None,
            session_name: "rootwatch".into(),
        })
    );
    let c = cwl(
        "log_groups = [\"a\"]\nregion = \"us-west-2\"\nrole_arn = \"arn:aws:iam::444455556666:role/r\"\nexternal_id = \"tenant-42\"\nsession_name = \"rootwatch@soc\"\n",
    );
    assert_eq!(c.aws.region.as_deref(), Some("us-west-2"));
    let role = c.aws.role.unwrap();
    assert_eq!(role.external_id.as_deref(), Some("tenant-42"));
    assert_eq!(role.session_name, "rootwatch@soc");
    // `check-config` shows the external id no more than the audit's.
    let text = format!(
        "{CWL}log_groups = [\"a\"]\nrole_arn = \"arn:aws:iam::444455556666:role/r\"\nexternal_id = \"tenant-42\"\n"
    );
    let shown = render_effective(&parse(&text, &env).unwrap());
    assert!(
        !shown.contains("tenant-42") && shown.contains("<redacted>"),
        "{shown}"
    );
}

#[test]
fn role_errors_name_the_key() {
    let url = "https://sqs.eu-west-1.amazonaws.com/111122223333/ct";
    let e = |extra: &str| sqs_at(url, extra).unwrap_err().to_string();
    assert_eq!(
        e("role_arn = \"arn:aws:iam::444455556666:user/bob\"\n"),
        "`sources[0].role_arn`: `arn:aws:iam::444455556666:user/bob` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"
    );
    assert_eq!(
        e("external_id = \"tenant-42\"\n"),
        "`sources[0].external_id`: only applies with `role_arn`"
    );
    assert_eq!(
        e("session_name = \"rootwatch\"\n"),
        "`sources[0].session_name`: only applies with `role_arn`"
    );
    let role = "role_arn = \"arn:aws:iam::444455556666:role/r\"\n";
    assert_eq!(
        e(&format!("{role}session_name = \"has space\"\n")),
        "`sources[0].session_name`: `has space` must be 2 to 64 letters, digits or `_+=,.@-`"
    );
    let long = "x".repeat(65);
    assert!(
        e(&format!("{role}session_name = \"{long}\"\n")).starts_with("`sources[0].session_name`:")
    );
    assert!(e(&format!("{role}external_id = \"x\"\n")).starts_with("`sources[0].external_id`:"));
    // A file source has no AWS settings at all.
    let e = err("[[sources]]\ntype = \"file\"\npaths = [\"/x\"]\nregion = \"eu-west-1\"\n");
    assert!(e.contains("region"), "{e}");
}

// ---------------------------------------------------------------- shared checkpoints

#[test]
fn checkpoint_table_settings() {
    let base = "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\n";
    let table = |extra: &str| load_str(&format!("{base}{extra}"));
    let s = table(
        "checkpoint_table = \"rootwatch-checkpoints\"\ndead_letter_path = \"/data/dl.jsonl\"\n",
    )
    .unwrap();
    let SourceSettings::CloudwatchLogs(c) = &s.sources[0] else {
        panic!()
    };
    assert_eq!(
        c.checkpoint,
        CheckpointStore::Table {
            table: "rootwatch-checkpoints".into(),
            lease_duration: Duration::from_secs(30)
        }
    );
    let e = |extra: &str| table(extra).unwrap_err().to_string();
    assert_eq!(
        e("checkpoint_table = \"t-1\"\ncheckpoint_path = \"/x.json\"\ndead_letter_path = \"/d\"\n"),
        "`sources[0].checkpoint_table`: cannot be combined with `checkpoint_path`: set exactly one of them"
    );
    assert_eq!(
        e("checkpoint_table = \"t-1\"\n"),
        "`sources[0].dead_letter_queue_url`: (or `dead_letter_path`) is required with `checkpoint_table`: undeliverable alerts need a durable place, an SQS queue or a file on a persistent volume"
    );
    assert!(
        table(
            "checkpoint_table = \"t-1\"\ndead_letter_queue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/dl\"\n"
        )
        .is_ok()
    );
    assert!(
        e("checkpoint_table = \"no\"\ndead_letter_path = \"/d\"\n")
            .starts_with("`sources[0].checkpoint_table`: `no` is not a DynamoDB table name")
    );
    assert_eq!(
        e("checkpoint_table = \"t-1\"\ndead_letter_path = \"/d\"\nlease_duration_secs = 5\n"),
        "`sources[0].lease_duration_secs`: 5 is out of range (10 to 3600 seconds)"
    );
}

#[test]
fn raw_sink_settings_print_no_secret() {
    let raw = parse(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"https://hooks.example.com/T0/B0/s3cr3t-url\"\nhmac_secret = \"hmac-s3cr3t\"\nbearer_token = \"b3arer\"\nheaders = { \"X-Api-Key\" = \"h3ader\" }\n[[sinks]]\ntype = \"pagerduty\"\nrouting_key = \"r0uting\"\n[[sinks]]\ntype = \"sns\"\ntopic_arn = \"arn:aws:sns:us-east-1:111122223333:soc\"\nrole_arn = \"arn:aws:iam::111122223333:role/p\"\nexternal_id = \"ext-s3cr3t\"\n",
        &|_| None,
    )
    .unwrap();
    let shown = format!("{raw:?}");
    for secret in [
        "s3cr3t-url",
        "hmac-s3cr3t",
        "b3arer",
        "h3ader",
        "r0uting",
        "ext-s3cr3t",
    ] {
        assert!(!shown.contains(secret), "{secret} in {shown}");
    }
    assert!(
        shown.contains("X-Api-Key") && shown.contains("<redacted>"),
        "{shown}"
    );
    assert!(shown.contains("arn:aws:sns:us-east-1:111122223333:soc"));
}

/// Names are metric labels: an entry's default name is its type and what
/// it reads or where it sends, so adding an entry above it renames
/// nothing; two that would share one must be named.
#[test]
fn default_names_do_not_depend_on_position() {
    let queue = "[[sources]]\ntype = \"sqs\"\nqueue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/trail-events\"\n";
    let files = "[[sources]]\ntype = \"file\"\npaths = [\"/var/log/trail/\"]\n";
    let hook = "[[sinks]]\ntype = \"webhook\"\nurl = \"https://soc.example.com/hooks/rootwatch\"\n";
    let names = |text: &str| {
        let s = load_str(text).unwrap();
        let sources: Vec<String> = s.sources.iter().map(|s| s.name().to_owned()).collect();
        let sinks: Vec<String> = s.sinks.iter().map(|s| s.name.clone()).collect();
        (sources, sinks)
    };
    assert_eq!(
        names(&format!("{queue}{hook}")),
        (
            vec!["sqs-trail-events".into()],
            vec!["webhook-soc.example.com".into()]
        )
    );
    assert_eq!(
        names(&format!(
            "{files}{queue}[[sinks]]\ntype = \"stdout\"\n{hook}"
        )),
        (
            vec!["file-trail".into(), "sqs-trail-events".into()],
            vec!["stdout".into(), "webhook-soc.example.com".into()]
        )
    );
    let e = err(&format!("{hook}{hook}"));
    assert!(
        e.starts_with("`sinks[1].name`: its default name `webhook-soc.example.com` is that of another sink: give each of them a `name`"),
        "{e}"
    );
    // check-config shows the names it gave.
    let shown = render_effective(&parse(&format!("{queue}{hook}"), &env).unwrap());
    assert!(shown.contains("name = \"sqs-trail-events\""), "{shown}");
    assert!(shown.contains("region = \"us-east-1\""), "{shown}");
    assert!(
        shown.contains("name = \"webhook-soc.example.com\""),
        "{shown}"
    );
    assert!(shown.contains("min_severity = \"info\""), "{shown}");
}

/// check-config names every problem of a file, not only the first: each
/// section, source and sink is checked whatever the others hold.
#[test]
fn every_problem_is_reported_at_once() {
    let e = err(
        "[dedup]\ncapacity = 0\n[[sources]]\ntype = \"sqs\"\nqueue_url = \"not a url\"\n[[sinks]]\ntype = \"webhook\"\n[[sinks]]\ntype = \"stdout\"\nmin_severity = \"loud\"\n[detect]\ndisabled = [\"no-such-rule\"]\n",
    );
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines[0], "5 problems:", "{e}");
    for key in [
        "`detect.disabled[0]`",
        "`dedup.capacity`",
        "`sources[0].queue_url`",
        "`sinks[0].url`",
        "`sinks[1].min_severity`",
    ] {
        assert!(
            lines.iter().any(|l| l.trim_start().starts_with(key)),
            "{key}: {e}"
        );
    }
    // A sink's rule patterns are not checked against rules that did not
    // load: the one problem is the rule file.
    let e = err(
        "[detect.sigma]\nrules = [\"/nonexistent/rules\"]\n[[sinks]]\ntype = \"stdout\"\nrules = [\"sigma:*\"]\n",
    );
    assert!(e.starts_with("`detect.sigma.rules`"), "{e}");
}

/// Within one source every key is checked too: all of an entry's problems
/// come back at once, each named by its key.
#[test]
fn every_problem_of_one_source_is_reported() {
    let e = err(concat!(
        "[[sources]]\ntype = \"sqs\"\n",
        "queue_url = \"https://sqs.us-east-1.amazonaws.com/111122223333/trail\"\n",
        "concurrency = 0\nwait_time_secs = 21\nexpected_bucket_owner = \"me\"\n",
        "[[sources]]\ntype = \"cloudwatch_logs\"\nlog_groups = [\"a\"]\n",
        "checkpoint_path = \"/var/lib/rootwatch/cwl.json\"\n",
        "poll_interval_secs = 0\nmax_requests_per_sec = 0\n",
        "[[sources]]\ntype = \"file\"\npaths = []\npoll_interval_secs = 0\n",
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines[0], "7 problems:", "{e}");
    for key in [
        "`sources[0].concurrency`",
        "`sources[0].wait_time_secs`",
        "`sources[0].expected_bucket_owner`",
        "`sources[1].poll_interval_secs`",
        "`sources[1].max_requests_per_sec`",
        "`sources[2].paths`",
        "`sources[2].poll_interval_secs`",
    ] {
        assert!(
            lines.iter().any(|l| l.trim_start().starts_with(key)),
            "{key}: {e}"
        );
    }
}

/// And within one sink.
#[test]
fn every_problem_of_one_sink_is_reported() {
    let e = err(concat!(
        "[[sinks]]\ntype = \"webhook\"\nurl = \"http://soc.example.com/hook\"\n",
        "min_severity = \"loud\"\nrules = [\"no-such-rule\", \"root-*\"]\n",
        "timeout_secs = 0\nretry_max_secs = 0\n",
    ));
    let lines: Vec<&str> = e.lines().collect();
    assert_eq!(lines[0], "5 problems:", "{e}");
    for key in [
        "`sinks[0].url`",
        "`sinks[0].min_severity`",
        "`sinks[0].rules[0]`",
        "`sinks[0].timeout_secs`",
        "`sinks[0].retry_max_secs`",
    ] {
        assert!(
            lines.iter().any(|l| l.trim_start().starts_with(key)),
            "{key}: {e}"
        );
    }
}
