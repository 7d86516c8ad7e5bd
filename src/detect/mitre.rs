//! The MITRE ATT&CK techniques (enterprise matrix, attack.mitre.org) the
//! built-in rules report. Pure data. A rule names the technique its finding
//! is evidence of; where several could apply, the one an analyst would file
//! the alert under first.

use crate::finding::Technique;

/// T1078.004, Valid Accounts: Cloud Accounts. Root sign-ins and root API
/// calls are the root credentials in use, whoever holds them; an IAM user
/// signing in without MFA is a cloud account used with a password alone;
/// a call from outside the allow list is valid cloud credentials used from
/// a place they should not be, the sign of stolen keys or sessions.
pub const VALID_CLOUD_ACCOUNTS: Technique =
    Technique::new("T1078.004", "Valid Accounts: Cloud Accounts");

/// T1098.001, Account Manipulation: Additional Cloud Credentials. Root
/// creating an access key for itself adds a long-lived credential to the
/// most powerful account, the persistence this sub-technique describes.
pub const ADDITIONAL_CLOUD_CREDENTIALS: Technique = Technique::new(
    "T1098.001",
    "Account Manipulation: Additional Cloud Credentials",
);

/// T1110, Brute Force. A failed root sign-in is one guess; the parent
/// technique, since one failure cannot tell password guessing from
/// spraying or credential stuffing.
pub const BRUTE_FORCE: Technique = Technique::new("T1110", "Brute Force");

/// T1548.005, Abuse Elevation Control Mechanism: Temporary Elevated Cloud
/// Access. An `sts:AssumeRoot` session is short-lived root access granted
/// through a sanctioned elevation path, which is what this sub-technique
/// covers; it is kept apart from T1078.004 as the design keeps these
/// sessions apart from root credential use.
pub const TEMPORARY_ELEVATED_CLOUD_ACCESS: Technique = Technique::new(
    "T1548.005",
    "Abuse Elevation Control Mechanism: Temporary Elevated Cloud Access",
);
