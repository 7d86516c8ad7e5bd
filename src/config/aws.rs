//! The AWS keys every AWS-facing entry shares: `region`, `role_arn`,
//! `external_id`, `session_name`.

use super::{ConfigError, invalid};

/// A source's or AWS sink's AWS keys as written.
pub(super) struct RawAws<'a> {
    pub(super) region: &'a Option<String>,
    pub(super) role_arn: &'a Option<String>,
    pub(super) external_id: &'a Option<String>,
    pub(super) session_name: &'a Option<String>,
}

/// `region`, `role_arn`, `external_id`, `session_name` of the source at
/// `key`. `implied` is the region its resource names (a queue URL), as
/// (the key naming it, region): the default, and a `region` that differs
/// from it is an error (the calls would go to the wrong regional endpoint).
pub(super) fn aws_settings(
    key: &str,
    raw: RawAws<'_>,
    implied: Option<(&str, String)>,
) -> Result<crate::aws::AwsSettings, ConfigError> {
    use crate::aws;
    let region = match (raw.region, implied) {
        (Some(r), _) if !aws::is_region(r) => {
            return Err(invalid(
                format!("{key}.region"),
                format!("`{r}` is not an AWS region name such as eu-west-1"),
            ));
        }
        (Some(r), Some((k, implied))) if *r != implied => {
            return Err(invalid(
                format!("{key}.region"),
                format!("`{r}` differs from `{implied}`, the region `{k}` names"),
            ));
        }
        (Some(r), _) => Some(r.clone()),
        (None, implied) => implied.map(|(_, r)| r),
    };
    let role = match raw.role_arn {
        None => {
            for (k, v) in [
                ("external_id", raw.external_id),
                ("session_name", raw.session_name),
            ] {
                if v.is_some() {
                    return Err(invalid(
                        format!("{key}.{k}"),
                        "only applies with `role_arn`",
                    ));
                }
            }
            None
        }
        Some(arn) => {
            if !aws::is_role_arn(arn) {
                return Err(invalid(
                    format!("{key}.role_arn"),
                    format!("`{arn}` is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)"),
                ));
            }
            if let Some(id) = raw.external_id
                && !aws::is_external_id(id)
            {
                return Err(invalid(
                    format!("{key}.external_id"),
                    "must be 2 to 1224 letters, digits or `_+=,.@:/-`",
                ));
            }
            let session_name = match raw.session_name {
                Some(n) if !aws::is_session_name(n) => {
                    return Err(invalid(
                        format!("{key}.session_name"),
                        format!("`{n}` must be 2 to 64 letters, digits or `_+=,.@-`"),
                    ));
                }
                Some(n) => n.clone(),
                None => aws::DEFAULT_SESSION_NAME.to_owned(),
            };
            Some(aws::Role {
                arn: arn.clone(),
                external_id: raw.external_id.clone(),
                session_name,
            })
        }
    };
    Ok(aws::AwsSettings { region, role })
}
