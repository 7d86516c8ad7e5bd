//! Per-source AWS settings: the region a source's clients talk to and the
//! role they act as. One process may read queues in several regions and
//! accounts; each source (and, later, each AWS sink) derives its own
//! `SdkConfig` from the process-wide one with [`sdk_config`].

use aws_config::Region;
use aws_config::SdkConfig;
use aws_config::sts::AssumeRoleProvider;
use aws_sdk_sts::config::SharedCredentialsProvider;

/// The process-wide SDK configuration: the default credential chain and
/// region. Its HTTP client is the SDK's default for the latest behavior
/// version: hyper 1 and rustls over aws-lc-rs (the stack reqwest uses for
/// the sinks), honouring `HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY` and
/// `NO_PROXY` like the sinks (tests/proxy.rs).
pub async fn load_defaults() -> SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// Validated per-source AWS settings (see `src/config/aws.rs` for the keys).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    /// `None`: the region of the credential chain (`AWS_REGION`, profile,
    /// IMDS).
    pub region: Option<String>,
    pub role: Option<Role>,
}

/// A role assumed through STS for a source's calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    pub arn: String,
    pub external_id: Option<String>,
    pub session_name: String,
}

/// The session name CloudTrail shows for calls made with an assumed role
/// when the config names none.
pub const DEFAULT_SESSION_NAME: &str = "rootwatch";

/// `base` with `s` applied: its region, and with a role, credentials from
/// STS `AssumeRole` made with `base`'s credentials. Clients built from the
/// result cache the role's credentials and refresh them before they expire
/// (the SDK's identity cache). A role that cannot be assumed makes every
/// call fail with a credentials error; there is no fall back to `base`'s
/// own credentials.
pub async fn sdk_config(base: &SdkConfig, s: &AwsSettings) -> SdkConfig {
    let mut builder = base.to_builder();
    if let Some(r) = &s.region {
        builder = builder.region(Region::new(r.clone()));
    }
    if let Some(role) = &s.role {
        let mut p = AssumeRoleProvider::builder(role.arn.clone())
            .configure(base)
            .session_name(role.session_name.clone());
        // STS in the source's own region: a regional endpoint, reachable
        // from a VPC without internet access through its interface endpoint.
        if let Some(r) = &s.region {
            p = p.region(Region::new(r.clone()));
        }
        if let Some(id) = &role.external_id {
            p = p.external_id(id.clone());
        }
        builder = builder.credentials_provider(SharedCredentialsProvider::new(p.build().await));
    }
    builder.build()
}

/// The region an SQS queue URL names: `sqs.REGION.amazonaws.com`
/// (`.amazonaws.com.cn` in China), `sqs.REGION.api.aws` (dual-stack), the
/// legacy `REGION.queue.amazonaws.com` and `queue.amazonaws.com`
/// (us-east-1), and VPC endpoint names `vpce-….sqs.REGION.vpce.amazonaws.com`.
/// Anything else (an emulator on localhost, a custom proxy) names none.
pub fn region_from_queue_url(url: &str) -> Option<String> {
    let host = reqwest::Url::parse(url)
        .ok()?
        .host_str()?
        .to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let aws_domain = |rest: &[&str]| {
        matches!(
            rest,
            ["amazonaws", "com"] | ["amazonaws", "com", "cn"] | ["api", "aws"]
        )
    };
    match labels.as_slice() {
        ["queue", "amazonaws", "com"] => Some("us-east-1".to_owned()),
        [region, "queue", rest @ ..] if aws_domain(rest) && is_region(region) => {
            Some((*region).to_owned())
        }
        _ => {
            // `sqs.REGION.…`, possibly after a VPC endpoint's own labels.
            let at = labels.iter().position(|l| *l == "sqs")?;
            let region = labels.get(at + 1)?;
            let rest = &labels[at + 2..];
            let rest = match rest {
                ["vpce", r @ ..] => r,
                r => r,
            };
            (is_region(region) && aws_domain(rest)).then(|| (*region).to_owned())
        }
    }
}

/// The region a resource ARN names (an SNS topic, an EventBridge bus)
/// (`arn:aws:sns:eu-west-1:111122223333:alerts` -> `eu-west-1`).
pub fn arn_region(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(_), Some(_), Some(region)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    (!region.is_empty()).then_some(region)
}

/// `^[a-z]{2}(-[a-z]+)+-\d+$`: `us-east-1`, `ap-southeast-4`, `us-gov-west-1`,
/// `cn-north-1`. Anything else (`us-east-1.evil.example/`) is not a region.
/// A 12-digit AWS account id.
pub fn is_account_id(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

pub fn is_region(s: &str) -> bool {
    if s.len() > 32 {
        return false;
    }
    let parts: Vec<&str> = s.split('-').collect();
    let lower = |p: &&str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase());
    let (Some(first), Some(last)) = (parts.first(), parts.last()) else {
        return false;
    };
    parts.len() >= 3
        && first.len() == 2
        && lower(first)
        && parts[1..parts.len() - 1].iter().all(lower)
        && !last.is_empty()
        && last.len() <= 3
        && last.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:PARTITION:iam::ACCOUNT:role/PATH/NAME`.
pub fn is_role_arn(s: &str) -> bool {
    let mut parts = s.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let name = resource.strip_prefix("role/").unwrap_or("");
    partition
        .strip_prefix("aws")
        .is_some_and(|p| p.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && !name.is_empty()
        && !name.ends_with('/')
        && name.len() <= 512
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-/".contains(c))
}

/// STS `RoleSessionName`: 2 to 64 of `[\w+=,.@-]`.
pub fn is_session_name(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

/// STS `ExternalId`: 2 to 1224 of `[\w+=,.@:/-]`.
pub fn is_external_id(s: &str) -> bool {
    (2..=1224).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_of_arns() {
        assert_eq!(
            arn_region("arn:aws:sns:eu-west-1:111122223333:alerts"),
            Some("eu-west-1")
        );
        assert_eq!(
            arn_region("arn:aws:events:us-east-2:111122223333:event-bus/soc"),
            Some("us-east-2")
        );
        assert_eq!(arn_region("soc"), None);
        assert_eq!(arn_region("arn:aws:iam::111122223333:root"), None);
    }

    #[test]
    fn region_from_every_queue_url_form() {
        for (url, want) in [
            (
                "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
                Some("eu-west-1"),
            ),
            (
                "https://sqs.eu-west-1.api.aws/123456789012/q",
                Some("eu-west-1"),
            ),
            (
                "https://eu-west-1.queue.amazonaws.com/123456789012/q",
                Some("eu-west-1"),
            ),
            (
                "https://queue.amazonaws.com/123456789012/q",
                Some("us-east-1"),
            ),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q",
                Some("cn-north-1"),
            ),
            (
                "https://sqs.us-gov-west-1.amazonaws.com/123456789012/q",
                Some("us-gov-west-1"),
            ),
            (
                "https://vpce-0abc-xyz.sqs.ap-southeast-2.vpce.amazonaws.com/123456789012/q",
                Some("ap-southeast-2"),
            ),
            ("http://127.0.0.1:4566/123456789012/q", None),
            ("http://localhost:5000/123456789012/q", None),
            ("https://sqs.eu-west-1.example.com/123456789012/q", None),
            ("https://sqs.amazonaws.com/123456789012/q", None),
            ("not a url", None),
        ] {
            assert_eq!(region_from_queue_url(url).as_deref(), want, "{url}");
        }
    }

    #[test]
    fn shapes() {
        assert!(is_region("eu-west-1") && is_region("us-gov-east-1"));
        for bad in ["eu-west", "EU-WEST-1", "eu_west_1", "west-1", "eu--1", ""] {
            assert!(!is_region(bad), "{bad}");
        }
        assert!(is_role_arn("arn:aws:iam::123456789012:role/rootwatch"));
        assert!(is_role_arn(
            "arn:aws-us-gov:iam::123456789012:role/path/to/Reader_1"
        ));
        for bad in [
            "arn:aws:iam::123456789012:user/rootwatch",
            "arn:aws:iam::12345:role/r",
            "arn:aws:sts::123456789012:role/r",
            "arn:aws:iam:us-east-1:123456789012:role/r",
            "arn:azure:iam::123456789012:role/r",
            "arn:aws:iam::123456789012:role/",
            "rootwatch",
        ] {
            assert!(!is_role_arn(bad), "{bad}");
        }
        assert!(is_session_name("rootwatch") && is_session_name("a.b@c=d,e-f_g+h"));
        assert!(!is_session_name("r") && !is_session_name("has space"));
        assert!(!is_session_name(&"x".repeat(65)));
        assert!(is_external_id("tenant:42/abc") && !is_external_id("x"));
    }
}
