//! `[[sinks]] type = "sns"`: Amazon SNS `Publish` to a topic.

use super::{Entry, PayloadFormat, SinkKind, is_arn_of};
use crate::config::{ConfigError, invalid};

/// Amazon SNS `Publish` to a topic.
#[derive(Debug, Clone)]
pub struct SnsSettings {
    pub topic_arn: String,
    /// Region (default: the topic ARN's) and role.
    pub aws: crate::aws::AwsSettings,
    pub format: PayloadFormat,
}

pub(super) fn validate_sns(e: &Entry, format: PayloadFormat) -> Result<SinkKind, ConfigError> {
    let topic_arn = e.required("topic_arn", &e.raw.topic_arn)?;
    if !is_arn_of(&topic_arn, "sns", |name| !name.contains('/')) {
        return Err(invalid(
            format!("{}.topic_arn", e.key),
            "is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)",
        ));
    }
    Ok(SinkKind::Sns(SnsSettings {
        aws: e.aws("topic_arn", &topic_arn)?,
        topic_arn,
        format,
    }))
}
