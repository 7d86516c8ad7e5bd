//! The SNS sink: one `Publish` per finding to a topic. The message is the
//! finding JSON (or its OCSF form), under SNS's 256 KiB limit; message
//! attributes `rule`, `severity` and `account_id` let subscriptions filter
//! without parsing the body.

use std::time::Duration;

use aws_sdk_sns::types::MessageAttributeValue;

use super::aws::{MAX_BYTES, now_ms, send_error, within};
use super::format::escape::{self, limit};
use super::format::{PayloadFormat, fit};
use super::{BoxFuture, SendError, Sink};
use crate::config::SnsSettings;
use crate::finding::Finding;

pub struct SnsSink {
    client: super::aws::LazyClient<aws_sdk_sns::Client>,
    topic_arn: String,
    payload: PayloadFormat,
    timeout: Duration,
}

impl SnsSink {
    pub fn new(aws: &aws_config::SdkConfig, s: &SnsSettings, timeout: Duration) -> SnsSink {
        SnsSink {
            client: super::aws::LazyClient::new(aws, &s.aws, aws_sdk_sns::Client::new),
            topic_arn: s.topic_arn.clone(),
            payload: s.format,
            timeout,
        }
    }
}

/// The message attributes of `f`, as (name, value). The account comes
/// from the event: it is made one line, cut, and kept to printable ASCII
/// (account ids are digits; SNS refuses some characters in attribute
/// values, and a refused publish would hold back the alert); an empty
/// value is left out, since SNS refuses one too.
pub fn attributes(f: &Finding) -> Vec<(&'static str, String)> {
    let mut out = vec![
        ("rule", f.rule.clone()),
        ("severity", f.severity.as_str().to_owned()),
    ];
    if let Some(a) = &f.account_id {
        let a: String = escape::truncate(&escape::one_line(a), limit::VALUE)
            .chars()
            .map(|c| {
                if c.is_ascii_graphic() || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .collect();
        if !a.trim().is_empty() {
            out.push(("account_id", a));
        }
    }
    out
}

/// The message for `f`: at most what the 256 KiB limit leaves after the
/// attributes (SNS counts each one's name, type and value).
pub fn message(f: &Finding, payload: PayloadFormat, now_ms: i64) -> Result<String, SendError> {
    let attrs: usize = attributes(f)
        .iter()
        .map(|(k, v)| k.len() + "String".len() + v.len())
        .sum();
    let body = fit::fit(f, MAX_BYTES - attrs, |g| payload.body(g, now_ms)).map_err(|size| {
        SendError::Permanent {
            error: format!("the message is {size} bytes even cut, over the SNS limit"),
            status: None,
        }
    })?;
    Ok(String::from_utf8(body).expect("JSON is UTF-8"))
}

impl Sink for SnsSink {
    fn send<'a>(&'a self, finding: &'a Finding) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = message(finding, self.payload, now_ms())?;
            let mut req = self
                .client
                .get()
                .await
                .publish()
                .topic_arn(&self.topic_arn)
                .message(body);
            for (name, value) in attributes(finding) {
                let attr = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .expect("data_type is set");
                req = req.message_attributes(name, attr);
            }
            within(self.timeout, async {
                req.send().await.map(|_| ()).map_err(|e| send_error(&e))
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::format::escape::testing::{check_golden, golden_findings, hostile};

    #[test]
    fn attributes_are_filterable_and_inert() {
        let f = golden_findings().remove(0).1;
        assert_eq!(
            attributes(&f),
            vec![
                ("rule", "root-console-login-without-mfa".to_owned()),
                ("severity", "critical".to_owned()),
                ("account_id", "111122223333".to_owned()),
            ]
        );
        let h = hostile();
        let account = &attributes(&h)[2].1;
        assert!(!account.contains('\n'));
        assert!(account.chars().count() <= limit::VALUE);
        assert!(account.chars().all(|c| c.is_ascii_graphic() || c == ' '));
        let mut blank = h.clone();
        blank.account_id = Some(" ".into());
        assert_eq!(attributes(&blank).len(), 2);
    }

    /// What a Publish carries, per golden finding and format: the message
    /// (parsed) and the attributes.
    #[test]
    fn golden() {
        for (name, f) in golden_findings() {
            for (p, suffix) in [(PayloadFormat::Json, "json"), (PayloadFormat::Ocsf, "ocsf")] {
                let m = message(&f, p, 1_700_000_000_000).unwrap();
                let attrs: serde_json::Map<String, serde_json::Value> = attributes(&f)
                    .into_iter()
                    .map(|(k, v)| {
                        (
                            k.to_owned(),
                            serde_json::json!({"DataType": "String", "StringValue": v}),
                        )
                    })
                    .collect();
                let v = serde_json::json!({
                    "Message": serde_json::from_str::<serde_json::Value>(&m).unwrap(),
                    "MessageAttributes": attrs,
                });
                check_golden("sns", &format!("{name}.{suffix}"), &v);
            }
        }
    }

    #[test]
    fn the_message_and_attributes_stay_under_the_limit() {
        let mut f = hostile();
        f.account_id = Some("1".repeat(10_000));
        let big = format!("{{\"userAgent\":\"{}\"}}", "\\u0001".repeat(200_000));
        f.event = crate::finding::RawEvent::from_string(big).unwrap();
        for p in [PayloadFormat::Json, PayloadFormat::Ocsf] {
            let m = message(&f, p, 0).unwrap();
            let attrs: usize = attributes(&f)
                .iter()
                .map(|(k, v)| k.len() + 6 + v.len())
                .sum();
            assert!(m.len() + attrs <= MAX_BYTES, "{}", m.len() + attrs);
            serde_json::from_str::<serde_json::Value>(&m).unwrap();
        }
    }
}
