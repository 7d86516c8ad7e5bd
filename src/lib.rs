#![forbid(unsafe_code)]
//! rootwatch: watches AWS CloudTrail and alerts on root-user activity and
//! on calls from outside IP allow lists.

pub mod ack;
pub mod app;
pub mod audit;
pub mod aws;
pub mod cli;
pub mod config;
pub mod dead_letter;
pub mod decode;
pub mod dedup;
pub mod detect;
pub mod event;
pub mod finding;
pub mod healthcheck;
pub mod pipeline;
pub mod replay;
pub mod server;
pub mod shutdown;
pub mod sink;
pub mod source;
pub mod telemetry;
pub mod test_alert;
pub mod throttle;
