#![forbid(unsafe_code)]
//! rootwatch: watches AWS CloudTrail and alerts on root-user activity and
//! on calls from outside IP allow lists.

pub mod cli;
pub mod config;
pub mod decode;
pub mod dedup;
pub mod detect;
pub mod event;
pub mod finding;
pub mod replay;
