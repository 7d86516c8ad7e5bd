//! Request bodies for each kind of receiver. Pure: a finding in, bytes out.

pub mod check;
pub mod escape;
pub mod opsgenie;
pub mod pagerduty;
pub mod slack;
pub mod teams;
pub mod webhook;
