//! Whether a root API call is one of the tasks AWS documents as needing
//! root user credentials ("Tasks that require root user credentials" in the
//! IAM User Guide, and the task policies of `sts:AssumeRoot`:
//! IAMAuditRootUserCredentials, IAMCreateRootUserPassword,
//! IAMDeleteRootUserCredentials, S3UnlockBucketPolicy,
//! SQSUnlockQueuePolicy). A root call to any other API is the more
//! suspicious one: an IAM user or role could have made it.

use crate::event::Record;

/// IAM calls that manage the root user's own credentials: root-only when
/// they name no `userName` (the caller's own credentials).
const IAM_OWN_CREDENTIALS: [&str; 14] = [
    "CreateAccessKey",
    "DeleteAccessKey",
    "UpdateAccessKey",
    "CreateLoginProfile",
    "UpdateLoginProfile",
    "DeleteLoginProfile",
    "EnableMFADevice",
    "DeactivateMFADevice",
    "ResyncMFADevice",
    "UploadSigningCertificate",
    "UpdateSigningCertificate",
    "DeleteSigningCertificate",
    "ListAccessKeys",
    "ListMFADevices",
];

/// A root IAM call about its own credentials names no `userName`, or (as in
/// AWS's documented EnableMFADevice example) the name `AWS ROOT USER`.
fn names_root_itself(rec: &Record<'_>) -> bool {
    match rec.request_parameters.get().and_then(|p| p.user_name.get()) {
        None => true,
        Some(u) => u == "AWS ROOT USER",
    }
}

/// Whether `rec` (a root API call) is a task that needs root credentials.
pub fn requires_root(rec: &Record<'_>) -> bool {
    let name = rec.event_name.get().unwrap_or("");
    match rec.event_source.get().unwrap_or("") {
        "iam.amazonaws.com" => {
            IAM_OWN_CREDENTIALS.contains(&name) && names_root_itself(rec)
                // the root user's virtual MFA device
                || name == "CreateVirtualMFADevice"
                || name == "DeleteVirtualMFADevice"
        }
        // Unlocking a bucket whose policy denies everyone (S3UnlockBucketPolicy),
        // and turning MFA delete on or off.
        "s3.amazonaws.com" => {
            matches!(name, "PutBucketPolicy" | "DeleteBucketPolicy")
                || (name == "PutBucketVersioning" && rec.raw.contains("MfaDelete"))
        }
        // Unlocking a queue whose policy denies everyone (SQSUnlockQueuePolicy).
        "sqs.amazonaws.com" => name == "SetQueueAttributes",
        // The other documented tasks (closing the account, changing the
        // support plan, billing and tax settings) are console actions
        // whose events are not root API calls of a stable name.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(source: &str, name: &str, params: &str) -> String {
        format!(
            r#"{{"eventVersion":"1.09","userIdentity":{{"type":"Root","arn":"arn:aws:iam::111122223333:root","accountId":"111122223333"}},"eventTime":"2024-05-14T09:12:40Z","eventSource":"{source}","eventName":"{name}","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.7","requestParameters":{params},"eventID":"e1","eventType":"AwsApiCall","recipientAccountId":"111122223333"}}"#
        )
    }

    #[test]
    fn root_only_tasks_are_told_from_ordinary_calls() {
        for (source, name, params, want) in [
            ("iam.amazonaws.com", "CreateAccessKey", "null", true),
            (
                "iam.amazonaws.com",
                "CreateAccessKey",
                r#"{"userName":"alice"}"#,
                false,
            ),
            // AWS's documented example names root this way.
            (
                "iam.amazonaws.com",
                "EnableMFADevice",
                r#"{"userName":"AWS ROOT USER","serialNumber":"arn:aws:iam::111122223333:mfa/root-account-mfa-device"}"#,
                true,
            ),
            (
                "iam.amazonaws.com",
                "CreateVirtualMFADevice",
                r#"{"virtualMFADeviceName":"root"}"#,
                true,
            ),
            (
                "iam.amazonaws.com",
                "CreateUser",
                r#"{"userName":"backup-admin"}"#,
                false,
            ),
            (
                "s3.amazonaws.com",
                "DeleteBucketPolicy",
                r#"{"bucketName":"locked"}"#,
                true,
            ),
            (
                "s3.amazonaws.com",
                "PutBucketVersioning",
                r#"{"bucketName":"b","VersioningConfiguration":{"Status":"Enabled","MfaDelete":"Enabled"}}"#,
                true,
            ),
            (
                "s3.amazonaws.com",
                "PutBucketVersioning",
                r#"{"bucketName":"b","VersioningConfiguration":{"Status":"Enabled"}}"#,
                false,
            ),
            (
                "sqs.amazonaws.com",
                "SetQueueAttributes",
                r#"{"queueUrl":"q"}"#,
                true,
            ),
            ("ec2.amazonaws.com", "RunInstances", "null", false),
            ("s3.amazonaws.com", "ListBuckets", "null", false),
        ] {
            let raw = call(source, name, params);
            let rec = Record::parse(&raw).unwrap();
            assert_eq!(requires_root(&rec), want, "{source} {name} {params}");
        }
    }
}
