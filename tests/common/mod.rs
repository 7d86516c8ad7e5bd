//! Shared test harness: the moto AWS emulator (started by scripts/test.sh),
//! a webhook receiver on 127.0.0.1, and rootwatch run in-process.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::QueueAttributeName;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use rootwatch::config;

/// The moto server's URL. scripts/test.sh starts moto and sets it.
pub fn endpoint() -> String {
    std::env::var("ROOTWATCH_TEST_AWS_ENDPOINT").expect(
        "ROOTWATCH_TEST_AWS_ENDPOINT is not set: run the suite with scripts/test.sh, which installs and starts the moto AWS emulator",
    )
}

pub async fn aws() -> aws_config::SdkConfig {
    aws_at(&endpoint()).await
}

pub async fn aws_at(url: &str) -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

/// Milliseconds since the epoch, as CloudWatch Logs timestamps are.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// `ms` as the RFC 3339 time a `start` key takes.
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

pub struct Aws {
    pub sqs: aws_sdk_sqs::Client,
    pub s3: aws_sdk_s3::Client,
    pub sns: aws_sdk_sns::Client,
    pub config: aws_config::SdkConfig,
}

impl Aws {
    pub async fn new() -> Aws {
        let config = aws().await;
        let s3 = aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build();
        Aws {
            sqs: aws_sdk_sqs::Client::new(&config),
            s3: aws_sdk_s3::Client::from_conf(s3),
            sns: aws_sdk_sns::Client::new(&config),
            config,
        }
    }

    /// A fresh queue; with `dlq_after` receives, messages move to a new
    /// dead-letter queue whose URL is returned too.
    pub async fn queue(&self, dlq_after: Option<u32>) -> (String, Option<String>) {
        let mut dlq = None;
        let mut create = self.sqs.create_queue().queue_name(unique("q"));
        if let Some(n) = dlq_after {
            let d = self
                .sqs
                .create_queue()
                .queue_name(unique("dlq"))
                .send()
                .await
                .unwrap();
            let url = d.queue_url.unwrap();
            let arn = self.queue_arn(&url).await;
            create = create.attributes(
                QueueAttributeName::RedrivePolicy,
                format!(r#"{{"deadLetterTargetArn":"{arn}","maxReceiveCount":"{n}"}}"#),
            );
            dlq = Some(url);
        }
        let q = create.send().await.unwrap();
        (q.queue_url.unwrap(), dlq)
    }

    pub async fn queue_arn(&self, url: &str) -> String {
        let a = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        a.attributes().unwrap()[&QueueAttributeName::QueueArn].clone()
    }

    pub async fn send(&self, url: &str, body: &str) {
        self.sqs
            .send_message()
            .queue_url(url)
            .message_body(body)
            .send()
            .await
            .unwrap();
    }

    /// A new bucket whose object-created notifications go to `queue`,
    /// directly or through a new SNS topic subscribed by the queue.
    pub async fn trail_bucket(&self, queue: &str, through_sns: bool) -> String {
        use aws_sdk_s3::types::{
            Event, NotificationConfiguration, QueueConfiguration, TopicConfiguration,
        };
        let bucket = unique("trail");
        self.s3
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let queue_arn = self.queue_arn(queue).await;
        let notification = if through_sns {
            let topic = self
                .sns
                .create_topic()
                .name(unique("trail-topic"))
                .send()
                .await
                .unwrap()
                .topic_arn
                .unwrap();
            self.sns
                .subscribe()
                .topic_arn(&topic)
                .protocol("sqs")
                .endpoint(queue_arn)
                .send()
                .await
                .unwrap();
            NotificationConfiguration::builder()
                .topic_configurations(
                    TopicConfiguration::builder()
                        .topic_arn(topic)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build()
        } else {
            NotificationConfiguration::builder()
                .queue_configurations(
                    QueueConfiguration::builder()
                        .queue_arn(queue_arn)
                        .events(Event::S3ObjectCreated)
                        .build()
                        .unwrap(),
                )
                .build()
        };
        self.s3
            .put_bucket_notification_configuration()
            .bucket(&bucket)
            .notification_configuration(notification)
            .send()
            .await
            .unwrap();
        bucket
    }

    /// Uploads `text` gzip-compressed, as CloudTrail writes log files.
    pub async fn put_gz(&self, bucket: &str, key: &str, text: &str) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(gzip(text)))
            .send()
            .await
            .unwrap();
    }

    /// The bodies of up to ten messages one receive returns (waiting 1 s).
    pub async fn receive_bodies(&self, url: &str) -> Vec<String> {
        self.sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
            .into_iter()
            .filter_map(|m| m.body)
            .collect()
    }

    /// Visible plus in-flight messages.
    pub async fn depth(&self, url: &str) -> u64 {
        let (visible, hidden) = self.visible_and_hidden(url).await;
        visible + hidden
    }
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not within {limit:?}: {what}");
}

#[derive(Clone, Debug)]
pub struct Request {
    pub headers: HeaderMap,
    pub body: Bytes,
    pub status: u16,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

type Respond = Arc<dyn Fn(usize) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync>;

#[derive(Clone)]
struct HookState {
    requests: Arc<Mutex<Vec<Request>>>,
    respond: Respond,
}

/// Serves `app` on a free 127.0.0.1 port until the returned token is
/// cancelled.
pub async fn serve(app: axum::Router) -> (SocketAddr, tokio_util::sync::CancellationToken) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let s = stop.clone();
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { s.cancelled().await })
            .await
            .unwrap();
    });
    (addr, stop)
}

/// A webhook receiver on 127.0.0.1 that answers the n-th request (from 0)
/// as `respond(n)` says, and records every request.
pub struct Webhook {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Request>>>,
    stop: tokio_util::sync::CancellationToken,
}

impl Webhook {
    pub async fn start(
        respond: impl Fn(usize) -> (StatusCode, Vec<(&'static str, String)>) + Send + Sync + 'static,
    ) -> Webhook {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let state = HookState {
            requests: Arc::clone(&requests),
            respond: Arc::new(respond),
        };
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(state);
        let (addr, stop) = serve(app).await;
        Webhook {
            addr,
            requests,
            stop,
        }
    }

    pub async fn ok() -> Webhook {
        Webhook::start(|_| (StatusCode::OK, vec![])).await
    }

    /// A receiver that answers 200 while the returned switch is on and 503
    /// while it is off.
    pub async fn switchable(up: bool) -> (Webhook, Arc<std::sync::atomic::AtomicBool>) {
        use std::sync::atomic::{AtomicBool, Ordering};
        let switch = Arc::new(AtomicBool::new(up));
        let s = Arc::clone(&switch);
        let hook = Webhook::start(move |_| {
            if s.load(Ordering::SeqCst) {
                (StatusCode::OK, vec![])
            } else {
                (StatusCode::SERVICE_UNAVAILABLE, vec![])
            }
        })
        .await;
        (hook, switch)
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        self.requests.lock().unwrap().clone()
    }

    /// Findings the receiver accepted (2xx).
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.requests()
            .iter()
            .filter(|r| r.status < 300)
            .map(Request::json)
            .collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn hook(State(s): State<HookState>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let n = s.requests.lock().unwrap().len();
    let (status, extra) = (s.respond)(n);
    s.requests.lock().unwrap().push(Request {
        headers,
        body,
        status: status.as_u16(),
    });
    let mut h = HeaderMap::new();
    for (k, v) in extra {
        h.insert(k, v.parse().unwrap());
    }
    (status, h, "")
}

pub fn settings(toml: &str) -> config::Settings {
    let raw = config::parse(toml, &|_| None).unwrap_or_else(|e| panic!("{e}\n{toml}"));
    config::validate(&raw).unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

/// rootwatch running in-process; stops (and is awaited) on `stop()`.
pub struct Daemon {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), rootwatch::app::RunError>>,
}

impl Daemon {
    pub async fn start(toml: &str, aws: &aws_config::SdkConfig) -> Daemon {
        let opts = rootwatch::app::Options {
            aws: Some(aws.clone()),
            ..Default::default()
        };
        Daemon::start_with(toml, opts)
    }

    /// Starts with its admin server (`server.listen` in `toml`) and returns
    /// the address it listens on.
    pub async fn with_admin(
        toml: &str,
        aws: Option<aws_config::SdkConfig>,
        readiness: Option<Arc<rootwatch::server::Readiness>>,
    ) -> (Daemon, SocketAddr) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let opts = rootwatch::app::Options {
            aws,
            admin_bound: Some(tx),
            readiness,
            ..Default::default()
        };
        let d = Daemon::start_with(toml, opts);
        (d, rx.await.expect("the admin server listens"))
    }

    fn start_with(toml: &str, opts: rootwatch::app::Options) -> Daemon {
        let settings = settings(toml);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rootwatch::app::run_with(settings, opts, async move {
            let _ = rx.await;
        }));
        Daemon {
            stop: Some(tx),
            task,
        }
    }

    pub async fn stop(self) {
        self.stop_within(Duration::from_secs(60)).await
    }

    /// Signals shutdown without waiting for the end.
    pub fn signal(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }

    /// Signals shutdown (unless already signalled) and expects a clean end
    /// within `limit`.
    pub async fn stop_within(mut self, limit: Duration) {
        self.signal();
        tokio::time::timeout(limit, &mut self.task)
            .await
            .unwrap_or_else(|_| panic!("rootwatch did not stop within {limit:?}"))
            .unwrap()
            .unwrap();
    }
}

/// A root API call made in an MFA session: exactly one finding (root-api-call).
pub fn root_call(event_id: &str) -> String {
    format!(
        r#"{{"eventVersion":"1.08","userIdentity":{{"type":"Root","principalId":"111122223333","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333","accessKeyId":"ASIAEXAMPLEROOTSESSN","sessionContext":{{"sessionIssuer":{{}},"webIdFederationData":{{}},"attributes":{{"creationDate":"2024-05-01T11:58:02Z","mfaAuthenticated":"true"}}}}}},"eventTime":"2024-05-01T12:00:00Z","eventSource":"iam.amazonaws.com","eventName":"DeleteUser","awsRegion":"us-east-1","sourceIPAddress":"203.0.113.9","userAgent":"aws-cli/2.15.0","requestParameters":{{"userName":"old"}},"responseElements":null,"requestID":"r-{event_id}","eventID":"{event_id}","readOnly":false,"eventType":"AwsApiCall","managementEvent":true,"recipientAccountId":"111122223333","eventCategory":"Management"}}"#
    )
}

/// The `root-api-call` finding a sink test sends, made from `raw`.
pub fn root_call_finding(raw: &str) -> rootwatch::finding::Finding {
    let rec = rootwatch::event::Record::parse(raw).unwrap();
    rootwatch::finding::Finding::new(
        &rec,
        "root-api-call",
        "Root user API call",
        rootwatch::finding::Severity::High,
        "The root user called DeleteUser.".into(),
        Some(true),
    )
}

pub fn eventbridge(record: &str) -> String {
    format!(
        r#"{{"version":"0","id":"{}","detail-type":"AWS API Call via CloudTrail","source":"aws.iam","account":"111122223333","time":"2024-05-01T12:00:00Z","region":"us-east-1","resources":[],"detail":{record}}}"#,
        unique("eb")
    )
}

/// `record` (CloudTrail JSON, embedded as it is) in an EventBridge event as
/// AWS builds one: `source` is `aws.` + the service part of `eventSource`
/// (`s3.amazonaws.com` -> `aws.s3`), the detail-type follows `eventType`,
/// account, region and time come from the record.
pub fn eventbridge_as_aws(record: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(record).expect("a CloudTrail record");
    let text = |k: &str| v[k].as_str().unwrap_or("").to_owned();
    let service = text("eventSource");
    let service = service.strip_suffix(".amazonaws.com").unwrap_or(&service);
    let detail_type = match v["eventType"].as_str() {
        Some("AwsConsoleSignIn") => "AWS Console Sign In via CloudTrail",
        Some("AwsServiceEvent") => "AWS Service Event via CloudTrail",
        Some("AwsConsoleAction") => "AWS Console Action via CloudTrail",
        Some("AwsCloudTrailInsight") => "AWS Insight via CloudTrail",
        _ => "AWS API Call via CloudTrail",
    };
    let head = serde_json::json!({
        "version": "0",
        "id": unique("eb"),
        "detail-type": detail_type,
        "source": format!("aws.{service}"),
        "account": text("recipientAccountId"),
        "time": text("eventTime"),
        "region": text("awsRegion"),
        "resources": [],
    })
    .to_string();
    format!("{},\"detail\":{record}}}", &head[..head.len() - 1])
}

pub fn sns_wrap(body: &str) -> String {
    serde_json::json!({"Type":"Notification","MessageId":unique("sns"),"TopicArn":"arn:aws:sns:us-east-1:111122223333:t","Message":body,"Timestamp":"2024-05-01T12:00:01.000Z","SignatureVersion":"1","Signature":"EXAMPLE"}).to_string()
}

pub fn gzip(text: &str) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

/// An SQS source, with throttling off so every finding is its own alert.
pub fn sqs_source(queue: &str, visibility: u64) -> String {
    format!(
        "[[sources]]\ntype = \"sqs\"\nqueue_url = \"{queue}\"\nconcurrency = 2\nwait_time_secs = 1\nvisibility_timeout_secs = {visibility}\n[throttle]\nwindow_secs = 0\n"
    )
}

/// An SQS source feeding a webhook sink (retries up to 60 s unless `extra`
/// says otherwise), throttling and the admin server off.
pub fn sqs_to_webhook(queue: &str, visibility: u64, url: &str, extra: &str) -> String {
    let retry = if extra.contains("retry_max_secs") {
        ""
    } else {
        "retry_max_secs = 60\n"
    };
    format!(
        "{}[[sinks]]\ntype = \"webhook\"\nurl = \"{url}\"\n{retry}{extra}\n[server]\nlisten = \"\"\n",
        sqs_source(queue, visibility)
    )
}

/// The `rootwatch` binary with `args`, its AWS clients pointed at the
/// emulator with test credentials and no profile or instance metadata.
pub fn rootwatch_at_emulator(args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"));
    c.args(args)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE");
    c
}

/// Starts the `rootwatch run` binary on `config` (written to `dir`), pointed
/// at the emulator, its log in `dir/rootwatch.log`.
pub fn spawn_rootwatch(config: &str, dir: &std::path::Path) -> std::process::Child {
    let path = dir.join("rootwatch.toml");
    std::fs::write(&path, config).unwrap();
    let log = std::fs::File::create(dir.join("rootwatch.log")).unwrap();
    rootwatch_at_emulator(&["run", "--config"])
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// Waits (blocking) for the child to exit; kills it and fails after `limit`.
pub fn wait_exit(child: &mut std::process::Child, limit: Duration) -> Option<i32> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("rootwatch did not exit within {limit:?}");
}

// ------------------------------------------------------------ fault proxy

/// What the proxy does to the calls it sees.
#[derive(Default)]
struct Faults {
    /// Every SQS call answers 500 while set.
    sqs_down: std::sync::atomic::AtomicBool,
    /// Every CloudWatch Logs call answers this (status, error code,
    /// message) while set.
    logs_fault: Mutex<Option<(u16, String, String)>>,
    /// S3 GETs whose path contains one of these answer 403 AccessDenied.
    denied: Mutex<Vec<String>>,
    /// S3 GETs whose path contains the text are answered after the delay.
    slow: Mutex<Option<(String, Duration)>>,
    /// S3 GETs whose path contains the text send the first half of their
    /// body at once and the rest after the delay.
    stalled: Mutex<Option<(String, Duration)>>,
    /// Answers given, by (action, status): SQS actions by name, S3 GETs
    /// as `GetObject`.
    answers: Mutex<std::collections::BTreeMap<(String, u16), u64>>,
}

#[derive(Clone)]
struct ProxyState {
    client: reqwest::Client,
    upstream: String,
    faults: Arc<Faults>,
}

/// A proxy on 127.0.0.1 in front of the emulator that fails calls on
/// demand: every SQS call (an outage), GETs of chosen S3 objects (403), or
/// holds back chosen GETs. It counts every answer by action and status, so
/// a test can prove the faults it injected were met.
pub struct FaultProxy {
    pub url: String,
    faults: Arc<Faults>,
}

impl FaultProxy {
    pub async fn start() -> FaultProxy {
        let faults = Arc::new(Faults::default());
        let state = ProxyState {
            client: reqwest::Client::new(),
            upstream: endpoint(),
            faults: Arc::clone(&faults),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FaultProxy {
            url: format!("http://{addr}"),
            faults,
        }
    }

    /// Every SQS call (receive, delete, visibility) answers 500 while `down`.
    pub fn set_sqs_down(&self, down: bool) {
        self.faults
            .sqs_down
            .store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every CloudWatch Logs call answers `status` with the error `code`
    /// and `message` (as the JSON protocol does) until `None`.
    pub fn set_logs_fault(&self, fault: Option<(u16, &str, &str)>) {
        *self.faults.logs_fault.lock().unwrap() =
            fault.map(|(s, c, m)| (s, c.to_owned(), m.to_owned()));
    }

    /// GETs whose path contains `part` answer 403 AccessDenied.
    pub fn deny_get(&self, part: &str) {
        self.faults.denied.lock().unwrap().push(part.to_owned());
    }

    pub fn allow_get(&self, part: &str) {
        self.faults.denied.lock().unwrap().retain(|p| p != part);
    }

    /// GETs whose path contains `part` are answered `delay` late.
    pub fn slow_get(&self, part: &str, delay: Duration) {
        *self.faults.slow.lock().unwrap() = Some((part.to_owned(), delay));
    }

    /// GETs whose path contains `part` stop half-way through their body
    /// for `delay`.
    pub fn stall_get(&self, part: &str, delay: Duration) {
        *self.faults.stalled.lock().unwrap() = Some((part.to_owned(), delay));
    }

    /// How many `action` calls were answered with `status`.
    pub fn answers(&self, action: &str, status: u16) -> u64 {
        self.faults
            .answers
            .lock()
            .unwrap()
            .get(&(action.to_owned(), status))
            .copied()
            .unwrap_or(0)
    }
}

/// The SQS action of a request: the JSON protocol names it in
/// `X-Amz-Target`, the query protocol in the form body.
fn sqs_action(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    if let Some(t) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        return t.strip_prefix("AmazonSQS.").map(str::to_owned);
    }
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|kv| kv.strip_prefix("Action="))
        .map(str::to_owned)
}

async fn forward(
    State(p): State<ProxyState>,
    method: axum::http::Method,
    uri: axum::http::Uri,
    mut headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    use std::sync::atomic::Ordering;
    let sqs = sqs_action(&headers, &body);
    let action = match (&sqs, &method) {
        (Some(a), _) => a.clone(),
        (None, &axum::http::Method::GET) => "GetObject".to_owned(),
        (None, m) => m.to_string(),
    };
    let path = uri.path().to_owned();
    let count = |status: u16| {
        *p.faults
            .answers
            .lock()
            .unwrap()
            .entry((action.clone(), status))
            .or_default() += 1;
    };
    if sqs.is_some() && p.faults.sqs_down.load(Ordering::SeqCst) {
        count(500);
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/x-amz-json-1.0")],
            r#"{"__type":"com.amazonaws.sqs#InternalError","message":"injected outage"}"#,
        )
            .into_response();
    }
    let logs = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix("Logs_20140328."))
        .map(str::to_owned);
    let fault = p.faults.logs_fault.lock().unwrap().clone();
    if let (Some(call), Some((status, code, message))) = (&logs, fault) {
        *p.faults
            .answers
            .lock()
            .unwrap()
            .entry((call.clone(), status))
            .or_default() += 1;
        return (
            StatusCode::from_u16(status).unwrap(),
            [("content-type", "application/x-amz-json-1.1")],
            serde_json::json!({"__type": code, "message": message}).to_string(),
        )
            .into_response();
    }
    if action == "GetObject"
        && p.faults
            .denied
            .lock()
            .unwrap()
            .iter()
            .any(|d| path.contains(d.as_str()))
    {
        count(403);
        return (
            StatusCode::FORBIDDEN,
            [("content-type", "application/xml")],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>",
        )
            .into_response();
    }
    headers.remove(axum::http::header::HOST);
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let resp = p
        .client
        .request(method.clone(), format!("{}{path_and_query}", p.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let mut out = resp.headers().clone();
    out.remove(axum::http::header::TRANSFER_ENCODING);
    out.remove(axum::http::header::CONTENT_LENGTH);
    let bytes = resp.bytes().await.unwrap();
    let slow = p.faults.slow.lock().unwrap().clone();
    if let Some((part, delay)) = slow
        && action == "GetObject"
        && path.contains(part.as_str())
    {
        tokio::time::sleep(delay).await;
    }
    count(status.as_u16());
    let stalled = p.faults.stalled.lock().unwrap().clone();
    if let Some((part, delay)) = stalled
        && action == "GetObject"
        && path.contains(part.as_str())
    {
        use tokio::io::AsyncWriteExt;
        let (mut tx, rx) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            let half = bytes.len() / 2;
            if tx.write_all(&bytes[..half]).await.is_err() {
                return;
            }
            tokio::time::sleep(delay).await;
            let _ = tx.write_all(&bytes[half..]).await;
        });
        let body = axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(rx));
        return (status, out, body).into_response();
    }
    (status, out, bytes).into_response()
}

// ------------------------------------------------------------ gated receiver

/// A webhook receiver on 127.0.0.1 that holds every request until the gate
/// opens, then answers 200: deliveries stay pending for as long as a test
/// needs them to.
pub struct GatedHook {
    pub addr: SocketAddr,
    arrived: Arc<std::sync::atomic::AtomicUsize>,
    delivered: Arc<Mutex<Vec<serde_json::Value>>>,
    gate: tokio::sync::watch::Sender<bool>,
}

#[derive(Clone)]
struct GateState {
    arrived: Arc<std::sync::atomic::AtomicUsize>,
    delivered: Arc<Mutex<Vec<serde_json::Value>>>,
    gate: tokio::sync::watch::Receiver<bool>,
}

impl GatedHook {
    pub async fn start() -> GatedHook {
        let (gate, rx) = tokio::sync::watch::channel(false);
        let state = GateState {
            arrived: Arc::default(),
            delivered: Arc::default(),
            gate: rx,
        };
        let (arrived, delivered) = (Arc::clone(&state.arrived), Arc::clone(&state.delivered));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(gated))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        GatedHook {
            addr,
            arrived,
            delivered,
            gate,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Requests received so far, answered or still held.
    pub fn arrived(&self) -> usize {
        self.arrived.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn open(&self) {
        self.gate.send_replace(true);
    }

    /// Findings answered 200.
    pub fn delivered(&self) -> Vec<serde_json::Value> {
        self.delivered.lock().unwrap().clone()
    }
}

async fn gated(State(s): State<GateState>, body: Bytes) -> StatusCode {
    s.arrived.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut gate = s.gate.clone();
    if gate.wait_for(|open| *open).await.is_err() {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    s.delivered
        .lock()
        .unwrap()
        .push(serde_json::from_slice(&body).unwrap());
    StatusCode::OK
}

/// How many times each event id was delivered.
pub fn deliveries_by_event(
    findings: &[serde_json::Value],
) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for f in findings {
        *m.entry(f["event_id"].as_str().unwrap_or("").to_owned())
            .or_default() += 1;
    }
    m
}

/// A counter or gauge from Prometheus `text`, 0 when absent.
pub fn metric_in(text: &str, name: &str, labels: &str) -> f64 {
    series_value(text, &format!("{name}{{{labels}}}")).unwrap_or(0.0)
}

/// The value of one series (`name{labels}` as exported) in a /metrics text.
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

/// GET `path` on an admin server: (status, body).
pub async fn admin_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    match client.get(format!("http://{addr}{path}")).send().await {
        Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
        Err(e) => (0, e.to_string()),
    }
}

/// An S3 event notification for one object, as S3 sends it to SQS.
pub fn s3_notification(bucket: &str, key: &str) -> String {
    format!(
        r#"{{"Records":[{{"eventVersion":"2.1","eventSource":"aws:s3","awsRegion":"us-east-1","eventTime":"2024-05-01T12:00:00.000Z","eventName":"ObjectCreated:Put","s3":{{"s3SchemaVersion":"1.0","bucket":{{"name":"{bucket}","arn":"arn:aws:s3:::{bucket}"}},"object":{{"key":"{key}","size":10}}}}}}]}}"#
    )
}

/// `config` with its SQS source named `name`.
pub fn named(config: String, name: &str) -> String {
    config.replace(
        "type = \"sqs\"",
        &format!("type = \"sqs\"\nname = \"{name}\""),
    )
}

// ------------------------------------------------------------ fault tests

/// A webhook receiver on 127.0.0.1 whose behaviour changes while it runs:
/// the status it answers, a delay before each answer, holding every answer
/// until released, and going down (connections refused) and up again on
/// the same port. A finding counts as accepted only once its 2xx answer is
/// about to be sent: a request whose sender went away while it was delayed
/// or held is not counted (the sender did not learn it was delivered).
pub struct Receiver {
    pub addr: SocketAddr,
    shared: Arc<ReceiverShared>,
    server: Mutex<
        Option<(
            tokio_util::sync::CancellationToken,
            tokio::task::JoinHandle<()>,
        )>,
    >,
}

struct ReceiverShared {
    status: std::sync::atomic::AtomicU16,
    delay_ms: std::sync::atomic::AtomicU64,
    held: tokio::sync::watch::Sender<bool>,
    arrived: std::sync::atomic::AtomicUsize,
    /// (event_id, finding_id) of every accepted alert, in order.
    accepted: Mutex<Vec<(String, String)>>,
}

impl Receiver {
    /// Answers 200 at once until told otherwise.
    pub async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let r = Receiver {
            addr: listener.local_addr().unwrap(),
            shared: Arc::new(ReceiverShared {
                status: 200.into(),
                delay_ms: 0.into(),
                held: tokio::sync::watch::Sender::new(false),
                arrived: 0.into(),
                accepted: Mutex::new(Vec::new()),
            }),
            server: Mutex::new(None),
        };
        r.serve(listener);
        r
    }

    fn serve(&self, listener: tokio::net::TcpListener) {
        let stop = tokio_util::sync::CancellationToken::new();
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&self.shared));
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move { s.cancelled().await })
                .await;
        });
        *self.server.lock().unwrap() = Some((stop, task));
    }

    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    pub fn set_status(&self, status: u16) {
        self.shared
            .status
            .store(status, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn set_delay(&self, delay: Duration) {
        self.shared.delay_ms.store(
            delay.as_millis() as u64,
            std::sync::atomic::Ordering::SeqCst,
        );
    }

    /// Holds every answer (those waiting and those to come) until `release`.
    pub fn hold(&self) {
        self.shared.held.send_replace(true);
    }

    pub fn release(&self) {
        self.shared.held.send_replace(false);
    }

    /// Stops listening: new connections are refused until `up`.
    pub async fn down(&self) {
        let server = self.server.lock().unwrap().take();
        if let Some((stop, mut task)) = server {
            stop.cancel();
            if tokio::time::timeout(Duration::from_secs(10), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Listens again on the same port.
    pub async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr).await.unwrap();
        self.serve(listener);
    }

    /// Requests that arrived, answered or not.
    pub fn arrived(&self) -> usize {
        self.shared
            .arrived
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn accepted(&self) -> Vec<(String, String)> {
        self.shared.accepted.lock().unwrap().clone()
    }

    /// event_id -> how many alerts for it were accepted.
    pub fn accepted_by_event(&self) -> std::collections::BTreeMap<String, usize> {
        let mut m = std::collections::BTreeMap::new();
        for (event, _) in self.accepted() {
            *m.entry(event).or_default() += 1;
        }
        m
    }

    /// Distinct finding ids accepted.
    pub fn finding_ids(&self) -> std::collections::BTreeSet<String> {
        self.accepted().into_iter().map(|(_, f)| f).collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.release();
        if let Some((stop, _)) = self.server.lock().unwrap().take() {
            stop.cancel();
        }
    }
}

async fn receive(State(s): State<Arc<ReceiverShared>>, body: Bytes) -> StatusCode {
    use std::sync::atomic::Ordering;
    s.arrived.fetch_add(1, Ordering::SeqCst);
    let mut held = s.held.subscribe();
    let _ = held.wait_for(|h| !*h).await;
    let delay = Duration::from_millis(s.delay_ms.load(Ordering::SeqCst));
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let status = s.status.load(Ordering::SeqCst);
    if (200..300).contains(&status) {
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let text = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        s.accepted
            .lock()
            .unwrap()
            .push((text("event_id"), text("finding_id")));
    }
    StatusCode::from_u16(status).unwrap()
}

/// Each event id of `expected` with how many alerts for it `got` has
/// (0 when missing), and the ids not expected at all.
pub fn tally(
    expected: &[String],
    got: &std::collections::BTreeMap<String, usize>,
) -> (std::collections::BTreeMap<String, usize>, Vec<String>) {
    let counts = expected
        .iter()
        .map(|id| (id.clone(), got.get(id).copied().unwrap_or(0)))
        .collect();
    let unexpected = got
        .keys()
        .filter(|k| !expected.contains(k))
        .cloned()
        .collect();
    (counts, unexpected)
}

impl Aws {
    /// SendMessageBatch, ten bodies a call.
    pub async fn send_all(&self, url: &str, bodies: &[String]) {
        use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
        for chunk in bodies.chunks(10) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, b)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(format!("e{i}"))
                        .message_body(b)
                        .build()
                        .unwrap()
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .unwrap();
            assert!(out.failed().is_empty(), "{:?}", out.failed());
        }
    }

    /// (ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible).
    pub async fn visible_and_hidden(&self, url: &str) -> (u64, u64) {
        let a = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap();
        let attrs = a.attributes().unwrap();
        let n = |k: QueueAttributeName| {
            attrs
                .get(&k)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        (
            n(QueueAttributeName::ApproximateNumberOfMessages),
            n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }
}

/// A loopback port free at the time of the call, for a spawned daemon's
/// admin server.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Resident memory of process `pid` in KiB (`VmRSS` in /proc/PID/status).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Sends SIGTERM to the spawned daemon.
pub fn sigterm(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// A sample's value from the Prometheus text of a daemon's /metrics
/// (`series` is the name with its labels, as printed).
pub async fn scrape(admin: SocketAddr, series: &str) -> Option<f64> {
    let (status, text) = admin_get(admin, "/metrics").await;
    if status != 200 {
        return None;
    }
    series_value(&text, series)
}

/// A CloudWatch Logs group with one stream, `trail`, in the emulator.
pub struct LogGroup {
    pub logs: aws_sdk_cloudwatchlogs::Client,
    pub name: String,
}

impl LogGroup {
    pub async fn create(aws: &Aws, name: String) -> LogGroup {
        let logs = aws_sdk_cloudwatchlogs::Client::new(&aws.config);
        logs.create_log_group()
            .log_group_name(&name)
            .send()
            .await
            .unwrap();
        logs.create_log_stream()
            .log_group_name(&name)
            .log_stream_name("trail")
            .send()
            .await
            .unwrap();
        LogGroup { logs, name }
    }

    pub async fn new(aws: &Aws) -> LogGroup {
        LogGroup::create(aws, unique("group")).await
    }

    /// Puts root API calls `(timestamp, eventID)`; PutLogEvents wants them
    /// in time order.
    pub async fn put(&self, events: &[(i64, &str)]) {
        let mut events = events.to_vec();
        events.sort();
        let mut put = self
            .logs
            .put_log_events()
            .log_group_name(&self.name)
            .log_stream_name("trail");
        for (ts, id) in events {
            put = put.log_events(
                aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                    .timestamp(ts)
                    .message(root_call(id))
                    .build()
                    .unwrap(),
            );
        }
        put.send().await.unwrap();
    }

    /// Puts `(timestamp, message)` events in time order, a thousand a call
    /// (PutLogEvents takes at most 10,000 events and 1 MB).
    pub async fn put_messages(&self, events: &[(i64, String)]) {
        let mut events = events.to_vec();
        events.sort();
        for chunk in events.chunks(1000) {
            let batch = chunk
                .iter()
                .map(|(ts, m)| {
                    aws_sdk_cloudwatchlogs::types::InputLogEvent::builder()
                        .timestamp(*ts)
                        .message(m)
                        .build()
                        .unwrap()
                })
                .collect();
            self.logs
                .put_log_events()
                .log_group_name(&self.name)
                .log_stream_name("trail")
                .set_log_events(Some(batch))
                .send()
                .await
                .unwrap();
        }
    }
}

/// Whether a test that runs `program` is skipped: only when
/// scripts/test.sh could not install it (without root, outside CI) and
/// says so in `ROOTWATCH_TEST_MISSING`; the test then prints a SKIP line.
pub fn skip_without(program: &str) -> bool {
    let missing = std::env::var("ROOTWATCH_TEST_MISSING").unwrap_or_default();
    let skip = missing.split(',').any(|p| p.trim() == program);
    if skip {
        eprintln!("SKIP: {program} is not installed (scripts/test.sh could not install it)");
    }
    skip
}

/// `rootwatch test-alert` as a user runs it, on `config` written to
/// `dir`/rootwatch.toml: its exit code, stdout and stderr. It blocks: a
/// test whose receiver runs on its own runtime calls it inside
/// `tokio::task::block_in_place`.
pub fn test_alert(dir: &std::path::Path, config: &str) -> (Option<i32>, String, String) {
    let path = dir.join("rootwatch.toml");
    std::fs::write(&path, config).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rootwatch"))
        .args(["test-alert", "--config"])
        .arg(&path)
        .env_remove("ROOTWATCH_CONFIG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
