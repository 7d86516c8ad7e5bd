//! The root-user and console-login rules (docs/rules.md, "What it detects").

use super::{Context, Hit, Rule, mitre};
use crate::event::Record;
use crate::finding::{Severity, Technique};

fn who(rec: &Record<'_>) -> String {
    match (
        rec.user_identity.user_name.non_empty(),
        rec.user_identity.arn.non_empty(),
    ) {
        (Some(name), _) => name.to_owned(),
        (None, Some(arn)) => arn.to_owned(),
        (None, None) => "an unknown principal".to_owned(),
    }
}

fn from_where(rec: &Record<'_>) -> String {
    match rec.source_ip_address.non_empty() {
        Some(ip) => format!(" from {ip}"),
        None => String::new(),
    }
}

fn mfa_words(mfa: Option<bool>) -> &'static str {
    match mfa {
        Some(true) => "with MFA",
        Some(false) => "without MFA",
        None => "MFA not recorded",
    }
}

fn root_login(rec: &Record<'_>, result: &str) -> bool {
    rec.is_console_login() && rec.is_root() && rec.console_login_result() == Some(result)
}

pub struct RootConsoleLogin;

impl Rule for RootConsoleLogin {
    fn id(&self) -> &'static str {
        "root-console-login"
    }
    fn title(&self) -> &'static str {
        "Root user signed in to the console"
    }
    fn default_severity(&self) -> Severity {
        Severity::High
    }
    fn fields(&self) -> &'static str {
        "eventName, userIdentity.type, responseElements.ConsoleLogin, additionalEventData.MFAUsed"
    }
    fn technique(&self) -> Technique {
        mitre::VALID_CLOUD_ACCOUNTS
    }
    fn evaluate(&self, rec: &Record<'_>, _: &Context) -> Option<Hit> {
        if !root_login(rec, "Success") {
            return None;
        }
        let mfa = rec.console_mfa_used();
        Some(Hit {
            severity: self.default_severity(),
            reason: format!(
                "The root user signed in to the console{} ({}).",
                from_where(rec),
                mfa_words(mfa)
            ),
            mfa,
        })
    }
}

pub struct RootConsoleLoginFailure;

impl Rule for RootConsoleLoginFailure {
    fn id(&self) -> &'static str {
        "root-console-login-failure"
    }
    fn title(&self) -> &'static str {
        "Failed root console sign-in"
    }
    fn default_severity(&self) -> Severity {
        Severity::Low
    }
    fn fields(&self) -> &'static str {
        "eventName, userIdentity.type, responseElements.ConsoleLogin"
    }
    fn technique(&self) -> Technique {
        mitre::BRUTE_FORCE
    }
    fn evaluate(&self, rec: &Record<'_>, _: &Context) -> Option<Hit> {
        if !root_login(rec, "Failure") {
            return None;
        }
        Some(Hit {
            severity: self.default_severity(),
            reason: format!("A root console sign-in failed{}.", from_where(rec)),
            mfa: rec.console_mfa_used(),
        })
    }
}

pub struct RootConsoleLoginWithoutMfa;

impl Rule for RootConsoleLoginWithoutMfa {
    fn id(&self) -> &'static str {
        "root-console-login-without-mfa"
    }
    fn title(&self) -> &'static str {
        "Root user signed in without MFA"
    }
    fn default_severity(&self) -> Severity {
        Severity::Critical
    }
    fn fields(&self) -> &'static str {
        "eventName, userIdentity.type, responseElements.ConsoleLogin, additionalEventData.MFAUsed"
    }
    fn technique(&self) -> Technique {
        mitre::VALID_CLOUD_ACCOUNTS
    }
    fn evaluate(&self, rec: &Record<'_>, _: &Context) -> Option<Hit> {
        if !root_login(rec, "Success") || rec.console_mfa_used() == Some(true) {
            return None;
        }
        Some(Hit {
            severity: self.default_severity(),
            reason: format!(
                "The root user signed in to the console{} without MFA.",
                from_where(rec)
            ),
            mfa: Some(false),
        })
    }
}

pub struct IamConsoleLoginWithoutMfa;

impl Rule for IamConsoleLoginWithoutMfa {
    fn id(&self) -> &'static str {
        "iam-console-login-without-mfa"
    }
    fn title(&self) -> &'static str {
        "IAM user signed in without MFA"
    }
    fn default_severity(&self) -> Severity {
        Severity::Medium
    }
    fn fields(&self) -> &'static str {
        "eventName, userIdentity.type, responseElements.ConsoleLogin, additionalEventData.MFAUsed, additionalEventData.SamlProviderArn"
    }
    fn technique(&self) -> Technique {
        mitre::VALID_CLOUD_ACCOUNTS
    }
    fn evaluate(&self, rec: &Record<'_>, _: &Context) -> Option<Hit> {
        if !rec.is_console_login()
            || !rec.user_identity.kind.is("IAMUser")
            || rec.console_login_result() != Some("Success")
            || rec.console_mfa_used() == Some(true)
            || rec.is_saml_login()
        {
            return None;
        }
        Some(Hit {
            severity: self.default_severity(),
            reason: format!(
                "IAM user {} signed in to the console{} without MFA.",
                who(rec),
                from_where(rec)
            ),
            mfa: Some(false),
        })
    }
}

/// The shared condition of the three root API call rules.
fn root_api_call(rec: &Record<'_>, ctx: &Context) -> bool {
    rec.is_root()
        && !rec.is_console_login()
        && !rec.is_service_event()
        && !rec.is_assumed_root()
        && !rec
            .event_name
            .get()
            .is_some_and(|n| ctx.root_api_call_excluded_events.contains(n))
}

fn call_words(rec: &Record<'_>) -> String {
    let name = rec.event_name.get().unwrap_or("an API");
    let source = rec
        .event_source
        .get()
        .map(|s| format!(" ({s})"))
        .unwrap_or_default();
    let failed = match rec.error_code.non_empty() {
        Some(code) => format!(", which failed with {code}"),
        None => String::new(),
    };
    format!("{name}{source}{}{failed}", from_where(rec))
}

pub struct RootApiCall;

impl Rule for RootApiCall {
    fn id(&self) -> &'static str {
        "root-api-call"
    }
    fn title(&self) -> &'static str {
        "Root user API call"
    }
    fn default_severity(&self) -> Severity {
        Severity::Medium
    }
    fn fields(&self) -> &'static str {
        "userIdentity.type, eventName, eventType, userIdentity.invokedBy, userIdentity.sessionContext.assumedRoot, readOnly, errorCode"
    }
    fn technique(&self) -> Technique {
        mitre::VALID_CLOUD_ACCOUNTS
    }
    fn evaluate(&self, rec: &Record<'_>, ctx: &Context) -> Option<Hit> {
        if !root_api_call(rec, ctx) {
            return None;
        }
        // Reading and failing are still root credential use, but less urgent.
        let severity = if rec.is_read_only() || rec.is_error() {
            Severity::Low
        } else {
            Severity::Medium
        };
        Some(Hit {
            severity,
            reason: format!("The root user called {}.", call_words(rec)),
            mfa: rec.session_mfa(),
        })
    }
}

pub struct RootApiCallWithoutMfa;

impl Rule for RootApiCallWithoutMfa {
    fn id(&self) -> &'static str {
        "root-api-call-without-mfa"
    }
    fn title(&self) -> &'static str {
        "Root user API call without MFA"
    }
    fn default_severity(&self) -> Severity {
        Severity::High
    }
    fn fields(&self) -> &'static str {
        "as root-api-call, plus userIdentity.sessionContext.attributes.mfaAuthenticated"
    }
    fn technique(&self) -> Technique {
        mitre::VALID_CLOUD_ACCOUNTS
    }
    fn evaluate(&self, rec: &Record<'_>, ctx: &Context) -> Option<Hit> {
        if !root_api_call(rec, ctx) || rec.session_mfa() == Some(true) {
            return None;
        }
        Some(Hit {
            severity: self.default_severity(),
            reason: format!(
                "The root user called {} without an MFA-authenticated session.",
                call_words(rec)
            ),
            mfa: Some(false),
        })
    }
}

pub struct RootAccessKeyUsed;

impl Rule for RootAccessKeyUsed {
    fn id(&self) -> &'static str {
        "root-access-key-used"
    }
    fn title(&self) -> &'static str {
        "Root access key used"
    }
    fn default_severity(&self) -> Severity {
        Severity::Critical
    }
    fn fields(&self) -> &'static str {
        "as root-api-call, plus userIdentity.accessKeyId (long-term keys start AKIA)"
    }
    fn technique(&self) -> Technique {
        mitre::VALID_CLOUD_ACCOUNTS
    }
    fn evaluate(&self, rec: &Record<'_>, ctx: &Context) -> Option<Hit> {
        if !root_api_call(rec, ctx) {
            return None;
        }
        let key = rec.user_identity.access_key_id.get()?;
        if !key.starts_with("AKIA") {
            return None;
        }
        Some(Hit {
            severity: self.default_severity(),
            reason: format!(
                "The root user's long-term access key {key} called {}.",
                call_words(rec)
            ),
            mfa: rec.session_mfa(),
        })
    }
}

pub struct RootAccessKeyCreated;

impl Rule for RootAccessKeyCreated {
    fn id(&self) -> &'static str {
        "root-access-key-created"
    }
    fn title(&self) -> &'static str {
        "Root access key created"
    }
    fn default_severity(&self) -> Severity {
        Severity::Critical
    }
    fn fields(&self) -> &'static str {
        "eventName, userIdentity.type, requestParameters.userName, errorCode"
    }
    fn technique(&self) -> Technique {
        mitre::ADDITIONAL_CLOUD_CREDENTIALS
    }
    fn evaluate(&self, rec: &Record<'_>, _: &Context) -> Option<Hit> {
        if !rec.is_root() || !rec.event_name.is("CreateAccessKey") {
            return None;
        }
        // With a userName, root created a key for an IAM user, not for itself.
        if rec
            .request_parameters
            .get()
            .is_some_and(|p| p.user_name.non_empty().is_some())
        {
            return None;
        }
        let (severity, outcome) = match rec.error_code.non_empty() {
            Some(code) => (
                Severity::High,
                format!(
                    "tried to create an access key for itself{} and failed with {code}",
                    from_where(rec)
                ),
            ),
            None => (
                self.default_severity(),
                format!("created an access key for itself{}", from_where(rec)),
            ),
        };
        Some(Hit {
            severity,
            reason: format!("The root user {outcome}."),
            mfa: rec.session_mfa(),
        })
    }
}

pub struct RootPrivilegedSession;

impl Rule for RootPrivilegedSession {
    fn id(&self) -> &'static str {
        "root-privileged-session"
    }
    fn title(&self) -> &'static str {
        "Privileged root session (sts:AssumeRoot) action"
    }
    fn default_severity(&self) -> Severity {
        Severity::Medium
    }
    fn fields(&self) -> &'static str {
        "userIdentity.type, userIdentity.sessionContext.assumedRoot, eventName"
    }
    fn technique(&self) -> Technique {
        mitre::TEMPORARY_ELEVATED_CLOUD_ACCESS
    }
    fn evaluate(&self, rec: &Record<'_>, _: &Context) -> Option<Hit> {
        if !rec.is_root() || !rec.is_assumed_root() {
            return None;
        }
        Some(Hit {
            severity: self.default_severity(),
            reason: format!(
                "A privileged root session from sts:AssumeRoot called {}.",
                call_words(rec)
            ),
            mfa: rec.session_mfa(),
        })
    }
}
