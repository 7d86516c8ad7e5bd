//! The `syslog` sink against a real rsyslogd (Debian's `rsyslog`, which
//! scripts/test.sh installs) started here on a loopback port with a
//! configuration that writes each message as received (`%rawmsg%`) to a
//! file: every alert must arrive whole, as one RFC 5424 message, and parse.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

struct Rsyslog {
    child: Child,
    port: u16,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rsyslogd() -> String {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("rsyslogd")
        .to_owned()
}

/// Starts rsyslogd with a TCP input on a free loopback port, and waits
/// (bounded) until the port takes connections.
async fn rsyslog() -> Rsyslog {
    rsyslog_with(None).await
}

/// Runs `openssl` with `args` in `dir`; panics with its output on failure.
fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A test CA and a server certificate for `localhost` signed by it, made
/// with the openssl command line in `dir`: ca.pem, server.pem, server.key.
fn certificates(dir: &std::path::Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=rootwatch-test-ca",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    );
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "ext",
        ],
    );
}

/// rsyslogd, with TLS (the ossl stream driver, rsyslog-openssl) when
/// `tls` holds the certificates.
async fn rsyslog_with(tls: Option<&std::path::Path>) -> Rsyslog {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = dir.path().join("messages.log");
    let conf = dir.path().join("rsyslog.conf");
    let (global, module) = match tls {
        None => (String::new(), r#"module(load="imtcp")"#.to_owned()),
        Some(t) => (
            format!(
                r#" defaultNetstreamDriver="ossl" defaultNetstreamDriverCAFile="{0}/ca.pem" defaultNetstreamDriverCertFile="{0}/server.pem" defaultNetstreamDriverKeyFile="{0}/server.key""#,
                t.display()
            ),
            r#"module(load="imtcp" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")"#.to_owned(),
        ),
    };
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{work}"{global})
{module}
template(name="raw" type="string" string="%rawmsg%\n")
ruleset(name="alerts") {{
  action(type="omfile" file="{out}" template="raw")
}}
input(type="imtcp" address="127.0.0.1" port="{port}" ruleset="alerts")
"#,
            work = dir.path().display(),
            out = out.display(),
        ),
    )
    .unwrap();
    let child = Command::new(rsyslogd())
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.path().join("rsyslogd.pid"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("rsyslogd.err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("rsyslogd could not be started ({e}): run the suite with scripts/test.sh, which installs it"));
    eventually(Duration::from_secs(30), "rsyslogd listening", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    })
    .await;
    Rsyslog {
        child,
        port,
        out,
        _dir: dir,
    }
}

impl Rsyslog {
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// `<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`, split.
fn rfc5424(line: &str) -> (u16, Vec<&str>, &str) {
    let rest = line
        .strip_prefix('<')
        .unwrap_or_else(|| panic!("no PRI: {line}"));
    let (pri, rest) = rest.split_once('>').unwrap();
    let parts: Vec<&str> = rest.splitn(8, ' ').collect();
    assert_eq!(parts.len(), 8, "{line}");
    assert_eq!(parts[0], "1", "version: {line}");
    chrono::DateTime::parse_from_rfc3339(parts[1]).unwrap_or_else(|e| panic!("{e}: {line}"));
    (pri.parse().unwrap(), parts[..7].to_vec(), parts[7])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_from_sqs_arrive_whole_as_rfc5424_json() {
    if common::skip_without("rsyslogd") {
        return;
    }
    let rs = rsyslog().await;
    let aws = Aws::new().await;
    let (queue, _) = aws.queue(None).await;
    // A long user agent: a message far past 1 KiB must still arrive whole.
    let long = root_call("sys-1").replace(
        "aws-cli/2.15.0",
        &format!("aws-cli/2.15.0 {}", "x".repeat(3000)),
    );
    aws.send(&queue, &eventbridge(&long)).await;
    aws.send(&queue, &eventbridge(&root_call("sys-2"))).await;
    let config = format!(
        "{}[[sinks]]\ntype = \"syslog\"\nurl = \"tcp://127.0.0.1:{}\"\nhostname = \"rootwatch-test\"\nfacility = \"local4\"\nretry_max_secs = 30\n[server]\nlisten = \"\"\n",
        sqs_source(&queue, 30),
        rs.port
    );
    let d = Daemon::start(&config, &aws.config).await;
    eventually(
        Duration::from_secs(30),
        "two messages written and an empty queue",
        || async { rs.lines().len() >= 2 && aws.depth(&queue).await == 0 },
    )
    .await;
    d.stop().await;
    let lines = rs.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let mut ids = Vec::new();
    for line in &lines {
        let (pri, header, msg) = rfc5424(line);
        // local4 (20) * 8 + the finding's severity
        assert!((160..=166).contains(&pri), "{pri}");
        assert_eq!(header[2], "rootwatch-test");
        assert_eq!(header[3], "rootwatch");
        assert_eq!(header[5], "root-api-call");
        assert_eq!(header[6], "-");
        let v: serde_json::Value =
            serde_json::from_str(msg).unwrap_or_else(|e| panic!("{e}: {msg:.200}"));
        assert_eq!(v["rule"], "root-api-call");
        ids.push(v["event_id"].as_str().unwrap().to_owned());
        if v["event_id"] == "sys-1" {
            assert!(v["user_agent"].as_str().unwrap().len() > 3000);
        }
    }
    ids.sort();
    assert_eq!(ids, ["sys-1", "sys-2"]);
}

/// CEF through `test-alert`, and an unreachable server is a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cef_messages_parse_and_an_unreachable_server_is_a_failure() {
    if common::skip_without("rsyslogd") {
        return;
    }
    let rs = rsyslog().await;
    let dir = tempfile::tempdir().unwrap();
    let run = |port: u16| {
        let (code, out, _) = test_alert(
            dir.path(),
            &format!(
                "[[sinks]]\ntype = \"syslog\"\nname = \"siem\"\nurl = \"tcp://127.0.0.1:{port}\"\nformat = \"cef\"\ntimeout_secs = 3\n"
            ),
        );
        (code, out)
    };
    let (code, out) = tokio::task::block_in_place(|| run(rs.port));
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("siem (syslog): delivered"), "{out}");
    eventually(
        Duration::from_secs(10),
        "the CEF message written",
        || async { !rs.lines().is_empty() },
    )
    .await;
    let lines = rs.lines();
    let (_, header, msg) = rfc5424(&lines[0]);
    assert_eq!(header[5], "rootwatch-test");
    // CEF:Version|Vendor|Product|Version|Signature ID|Name|Severity|Extension
    let fields: Vec<&str> = msg.splitn(8, '|').collect();
    assert_eq!(fields.len(), 8, "{msg}");
    assert_eq!(fields[0], "CEF:0");
    assert_eq!(&fields[1..3], ["rootwatch", "rootwatch"]);
    assert_eq!(fields[4], "rootwatch-test");
    assert!(fields[5].starts_with("[TEST]"), "{msg}");
    assert!(fields[7].contains("externalId="), "{msg}");
    // Nothing listens on this port.
    let (code, out) = tokio::task::block_in_place(|| run(free_port()));
    assert_eq!(code, Some(69), "{out}");
    assert!(out.contains("siem (syslog):"), "{out}");
    assert!(!out.contains("delivered"), "{out}");
}

/// tls://: the handshake verifies the server against `ca_file`; a server
/// the CA did not sign is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_delivers_to_a_verified_server_and_refuses_an_unknown_one() {
    if common::skip_without("rsyslogd") {
        return;
    }
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path());
    let rs = rsyslog_with(Some(certs.path())).await;
    let dir = tempfile::tempdir().unwrap();
    let run = |ca: &std::path::Path| {
        let (code, out, _) = test_alert(
            dir.path(),
            &format!(
                "[[sinks]]\ntype = \"syslog\"\nname = \"siem\"\nurl = \"tls://localhost:{}\"\nca_file = \"{}\"\ntimeout_secs = 5\n",
                rs.port,
                ca.display()
            ),
        );
        (code, out)
    };
    let (code, out) = tokio::task::block_in_place(|| run(&certs.path().join("ca.pem")));
    assert_eq!(code, Some(0), "{out}");
    eventually(Duration::from_secs(10), "the message written", || async {
        !rs.lines().is_empty()
    })
    .await;
    let lines = rs.lines();
    let (_, header, msg) = rfc5424(&lines[0]);
    assert_eq!(header[5], "rootwatch-test");
    let v: serde_json::Value = serde_json::from_str(msg).unwrap();
    assert_eq!(v["rule"], "rootwatch-test");
    // Another CA: the server's certificate is not trusted.
    let other = tempfile::tempdir().unwrap();
    certificates(other.path());
    let (code, out) = tokio::task::block_in_place(|| run(&other.path().join("ca.pem")));
    assert_eq!(code, Some(69), "{out}");
    assert_eq!(rs.lines().len(), 1);
}

#[test]
fn bad_syslog_settings_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    for (sink, want) in [
        (
            "url = \"udp://127.0.0.1:514\"",
            "`sinks[0].url`: `udp://` is not tcp:// or tls://",
        ),
        (
            "url = \"tcp://siem.example.com:514\"",
            "plain tcp:// is only allowed to a loopback host",
        ),
        (
            "url = \"tcp://127.0.0.1:514/path\"",
            "takes only a host and a port",
        ),
        (
            "url = \"tcp://127.0.0.1:514\"\nformat = \"leef\"",
            "`sinks[0].format`: `leef` is not json or cef",
        ),
        (
            "url = \"tcp://127.0.0.1:514\"\nfacility = \"local9\"",
            "`local9` is not a syslog facility",
        ),
        (
            "url = \"tcp://127.0.0.1:514\"\nca_file = \"/etc/ssl/ca.pem\"",
            "applies to tls:// only",
        ),
        (
            "url = \"tls://siem.example.com\"\nca_file = \"/nonexistent/ca.pem\"",
            "`sinks[0].ca_file`: /nonexistent/ca.pem",
        ),
        (
            "url = \"tcp://127.0.0.1:514\"\ntoken = \"x\"",
            "`sinks[0].token`: does not apply to a syslog sink",
        ),
    ] {
        let path = dir.path().join("rootwatch.toml");
        std::fs::write(&path, format!("[[sinks]]\ntype = \"syslog\"\n{sink}\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_rootwatch"))
            .arg("check-config")
            .arg(&path)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(78), "{sink}: {err}");
        assert!(err.contains(want), "{sink}\nwanted {want}\n{err}");
    }
}
