//! A seeded generator of CloudTrail-shaped records for benchmarks, built
//! from the real records in tests/fixtures/third_party: each generated
//! record is a copy of a real one with a fresh eventID, a moving eventTime
//! and a source address drawn from a fixed mix (inside the benchmark allow
//! list, private, or outside it). The mix follows real trails: mostly
//! role, user and service calls, a few console sign-ins, very few root
//! events, and an occasional duplicate delivery. The same seed gives the
//! same bytes on every machine.

#![allow(dead_code)]

use std::io::{self, Write};
use std::net::Ipv4Addr;

use serde_json::Value;

/// The number of allow-listed /24s the benchmarks use.
pub const ALLOWLIST_PREFIXES: u32 = 10_000;

/// The benchmark allow list: `n` /24s from 100.0.0.0 up, plus the private
/// ranges (a deployment allow-lists its VPCs).
pub fn allowlist(n: u32) -> Vec<String> {
    let mut out: Vec<String> = (0..n)
        .map(|i| format!("{}/24", Ipv4Addr::from(0x6400_0000 + (i << 8))))
        .collect();
    out.extend(
        ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"]
            .iter()
            .map(|s| s.to_string()),
    );
    out
}

/// The allow list of the finding-heavy shape: three private ranges, as a
/// deployment allow-lists its VPCs (benches/peer_minimal.py takes the same).
pub const FINDING_HEAVY_ALLOWLIST: [&str; 3] = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"];

/// splitmix64: small, fast and the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// True `per_million` times in a million.
    pub fn chance(&mut self, per_million: u64) -> bool {
        self.below(1_000_000) < per_million
    }
}

pub struct TrailGen {
    rng: Rng,
    /// Role, user and service calls: the bulk of a trail.
    ordinary: Vec<Value>,
    /// Console sign-ins by IAM users and federated roles.
    logins: Vec<Value>,
    /// Events made with root credentials or in AssumeRoot sessions.
    root: Vec<Value>,
    /// The root events that are plain API calls (no sign-in, no service
    /// call, no AssumeRoot session, no CreateAccessKey): the root calls of
    /// the finding-heavy shape, which every engine scores alike.
    root_api: Vec<Value>,
    /// Seconds since the epoch of the next event.
    clock: i64,
    recent: Vec<String>,
    produced: u64,
}

const FIXTURES: [&str; 4] = [
    "invictus-aws-dataset/records.jsonl",
    "stratus-red-team/detonation_logs.jsonl",
    "panther-analysis/all_test_logs_records.jsonl",
    "aws-docs-examples/records.jsonl",
];

impl TrailGen {
    /// Reads the fixture records from `fixtures` (the third_party folder).
    pub fn new(fixtures: &std::path::Path, seed: u64) -> io::Result<Self> {
        let (mut ordinary, mut logins, mut root) = (Vec::new(), Vec::new(), Vec::new());
        for file in FIXTURES {
            let text = std::fs::read_to_string(fixtures.join(file))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let v: Value = serde_json::from_str(line).map_err(io::Error::other)?;
                if !v.is_object() {
                    continue;
                }
                if v["userIdentity"]["type"] == "Root" {
                    root.push(v);
                } else if v["eventName"] == "ConsoleLogin" {
                    logins.push(v);
                } else {
                    ordinary.push(v);
                }
            }
        }
        let root_api = root
            .iter()
            .filter(|v| {
                v["eventName"] != "ConsoleLogin"
                    && v["eventName"] != "CreateAccessKey"
                    && v["eventType"] == "AwsApiCall"
                    && v["userIdentity"]["invokedBy"].is_null()
                    && v["userIdentity"]["sessionContext"]["assumedRoot"].is_null()
                    && v["sourceIPAddress"]
                        .as_str()
                        .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok())
            })
            .cloned()
            .collect();
        Ok(TrailGen {
            rng: Rng::new(seed),
            ordinary,
            logins,
            root,
            root_api,
            clock: 1_704_067_200, // 2024-01-01T00:00:00Z
            recent: Vec::new(),
            produced: 0,
        })
    }

    /// The JSON text of the next record, as CloudTrail writes it (compact).
    pub fn next_record(&mut self) -> String {
        self.produced += 1;
        // CloudTrail delivers a small share of events twice.
        if !self.recent.is_empty() && self.rng.chance(2_000) {
            let i = self.rng.below(self.recent.len() as u64) as usize;
            return self.recent[i].clone();
        }
        let pool = if self.rng.chance(500) {
            &self.root
        } else if self.rng.chance(3_000) {
            &self.logins
        } else {
            &self.ordinary
        };
        let mut v = pool[self.rng.below(pool.len() as u64) as usize].clone();
        if self.rng.chance(300_000) {
            self.clock += 1;
        }
        let obj = v.as_object_mut().expect("records are objects");
        obj.insert("eventID".into(), Value::String(self.uuid()));
        obj.insert("eventTime".into(), Value::String(self.time()));
        let is_ip = obj
            .get("sourceIPAddress")
            .and_then(Value::as_str)
            .is_some_and(|s| s.parse::<std::net::IpAddr>().is_ok());
        if is_ip {
            let ip = self.address();
            obj.insert("sourceIPAddress".into(), Value::String(ip));
        }
        let text = aws_order(obj);
        if self.recent.len() < 1024 {
            self.recent.push(text.clone());
        } else {
            let i = self.rng.below(1024) as usize;
            self.recent[i] = text.clone();
        }
        text
    }

    /// The next record of the finding-heavy shape, the shape of a trail
    /// with S3 data events under `scope = "all"`: 95% S3 data events
    /// (GetObject, PutObject) by an assumed role from outside
    /// [`FINDING_HEAVY_ALLOWLIST`], 5% root API calls (real ones, from the
    /// fixtures) from inside it. Each record is one finding or more; no
    /// record comes twice.
    pub fn next_finding_heavy(&mut self) -> String {
        self.produced += 1;
        if self.rng.chance(300_000) {
            self.clock += 1;
        }
        if self.rng.chance(50_000) {
            let mut v = self.root_api[self.rng.below(self.root_api.len() as u64) as usize].clone();
            let obj = v.as_object_mut().expect("records are objects");
            obj.insert("eventID".into(), Value::String(self.uuid()));
            obj.insert("eventTime".into(), Value::String(self.time()));
            let ip = Ipv4Addr::from(0x0a00_0000 + self.rng.below(1 << 24) as u32);
            obj.insert("sourceIPAddress".into(), Value::String(ip.to_string()));
            return aws_order(obj);
        }
        let ip = Ipv4Addr::from(0xc612_0000 + self.rng.below(1 << 17) as u32);
        let event_id = self.uuid();
        let request_id = format!("{:016X}", self.rng.next_u64());
        let bucket = format!("app-data-{}", self.rng.below(8));
        let key = format!(
            "tenants/{}/objects/{:016x}.json",
            self.rng.below(500),
            self.rng.next_u64()
        );
        let put = self.rng.chance(200_000);
        let bytes = 200 + self.rng.below(200_000);
        let (name, inn, out) = if put {
            ("PutObject", bytes, 0)
        } else {
            ("GetObject", 0, bytes)
        };
        // Field names and order as CloudTrail writes S3 data events
        // (AWS documentation, "CloudTrail log file examples" for S3).
        let v = serde_json::json!({
            "eventVersion": "1.10",
            "userIdentity": {
                "type": "AssumedRole",
                "principalId": "AROAEXAMPLEAPPROLE01:i-0c8a3f5e2b1d4a697",
                "arn": "arn:aws:sts::111122223333:assumed-role/app-data-reader/i-0c8a3f5e2b1d4a697",
                "accountId": "111122223333",
                "accessKeyId": "ASIAEXAMPLEAPPSESSN1",
                "sessionContext": {
                    "sessionIssuer": {
                        "type": "Role",
                        "principalId": "AROAEXAMPLEAPPROLE01",
                        "arn": "arn:aws:iam::111122223333:role/app-data-reader",
                        "accountId": "111122223333",
                        "userName": "app-data-reader"
                    },
                    "attributes": {"creationDate": "2024-01-01T00:00:00Z", "mfaAuthenticated": "false"},
                    "ec2RoleDelivery": "2.0"
                }
            },
            "eventTime": self.time(),
            "eventSource": "s3.amazonaws.com",
            "eventName": name,
            "awsRegion": "us-east-1",
            "sourceIPAddress": ip.to_string(),
            "userAgent": "[aws-sdk-java/2.25.60 Linux/6.1.0 OpenJDK_64-Bit_Server_VM/21.0.3+9-LTS Java/21.0.3 vendor/Amazon.com_Inc. io/sync http/Apache cfg/retry-mode/adaptive]",
            "requestParameters": {
                "bucketName": bucket,
                "Host": format!("{bucket}.s3.us-east-1.amazonaws.com"),
                "key": key
            },
            "responseElements": null,
            "additionalEventData": {
                "SignatureVersion": "SigV4",
                "CipherSuite": "TLS_AES_128_GCM_SHA256",
                "bytesTransferredIn": inn,
                "AuthenticationMethod": "AuthHeader",
                "x-amz-id-2": format!("{:032x}", self.rng.next_u64() as u128 * 0x9E37_79B9),
                "bytesTransferredOut": out
            },
            "requestID": request_id,
            "eventID": event_id,
            "readOnly": !put,
            "resources": [
                {"type": "AWS::S3::Object", "ARN": format!("arn:aws:s3:::{bucket}/{key}")},
                {"accountId": "111122223333", "type": "AWS::S3::Bucket", "ARN": format!("arn:aws:s3:::{bucket}")}
            ],
            "eventType": "AwsApiCall",
            "managementEvent": false,
            "recipientAccountId": "111122223333",
            "eventCategory": "Data",
            "tlsDetails": {
                "tlsVersion": "TLSv1.3",
                "cipherSuite": "TLS_AES_128_GCM_SHA256",
                "clientProvidedHostHeader": format!("{bucket}.s3.us-east-1.amazonaws.com")
            }
        });
        aws_order(v.as_object().expect("an object"))
    }

    /// Writes `n` records of the finding-heavy shape as JSON lines.
    pub fn write_finding_heavy(&mut self, n: u64, out: &mut dyn Write) -> io::Result<()> {
        for _ in 0..n {
            out.write_all(self.next_finding_heavy().as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }

    /// 85% inside the allow list, 12% private (VPC endpoints), 3% outside.
    fn address(&mut self) -> String {
        let roll = self.rng.below(100);
        if roll < 85 {
            let net = self.rng.below(ALLOWLIST_PREFIXES as u64) as u32;
            let host = 1 + self.rng.below(254) as u32;
            Ipv4Addr::from(0x6400_0000 + (net << 8) + host).to_string()
        } else if roll < 97 {
            Ipv4Addr::from(0x0a00_0000 + self.rng.below(1 << 24) as u32).to_string()
        } else {
            // 198.18.0.0/15 (benchmarking range): never allow-listed.
            Ipv4Addr::from(0xc612_0000 + self.rng.below(1 << 17) as u32).to_string()
        }
    }

    fn uuid(&mut self) -> String {
        let a = self.rng.next_u64();
        let b = self.rng.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn time(&self) -> String {
        chrono::DateTime::from_timestamp(self.clock, 0)
            .expect("in range")
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    /// Writes `n` records as JSON lines.
    pub fn write_lines(&mut self, n: u64, out: &mut dyn Write) -> io::Result<()> {
        for _ in 0..n {
            out.write_all(self.next_record().as_bytes())?;
            out.write_all(b"\n")?;
        }
        Ok(())
    }
}

/// The top-level keys in the order CloudTrail writes them (serde_json's map
/// sorts them), the rest after.
const AWS_ORDER: [&str; 24] = [
    "eventVersion",
    "userIdentity",
    "eventTime",
    "eventSource",
    "eventName",
    "awsRegion",
    "sourceIPAddress",
    "userAgent",
    "errorCode",
    "errorMessage",
    "requestParameters",
    "responseElements",
    "additionalEventData",
    "requestID",
    "eventID",
    "readOnly",
    "resources",
    "eventType",
    "apiVersion",
    "managementEvent",
    "recipientAccountId",
    "sharedEventID",
    "vpcEndpointId",
    "eventCategory",
];

fn aws_order(obj: &serde_json::Map<String, Value>) -> String {
    let mut out = String::from("{");
    let known = AWS_ORDER.iter().filter_map(|k| obj.get_key_value(*k));
    let rest = obj.iter().filter(|(k, _)| !AWS_ORDER.contains(&k.as_str()));
    for (i, (k, v)) in known.chain(rest).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(k).expect("a string"));
        out.push(':');
        out.push_str(&serde_json::to_string(v).expect("serialisable"));
    }
    out.push('}');
    out
}
