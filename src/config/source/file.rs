//! `[[sources]] type = "file"`: local files and directories of CloudTrail
//! logs, read once or watched.

use std::path::PathBuf;
use std::time::Duration;

use super::{RawSource, dead_letter};
use crate::config::names::name_or;
use crate::config::{ConfigError, all, invalid, keep, secs};

#[derive(Debug, Clone)]
pub struct FileSettings {
    pub name: String,
    pub paths: Vec<PathBuf>,
    pub watch: bool,
    pub poll_interval: Duration,
    /// Undeliverable findings are appended here, and the file counts as
    /// handled; without it such a file stays unacknowledged.
    pub dead_letter_path: Option<PathBuf>,
}

pub(super) fn default_poll() -> u64 {
    2
}

/// The `file` source at `key`.
pub(super) fn validate_file(key: &str, s: &RawSource) -> Result<FileSettings, ConfigError> {
    let RawSource::File {
        name,
        paths,
        watch,
        poll_interval_secs,
        dead_letter_path,
    } = s
    else {
        unreachable!("validate_source passes a file source")
    };
    let e = &mut Vec::new();
    if paths.is_empty() {
        e.push(invalid(
            format!("{key}.paths"),
            "needs at least one file or directory",
        ));
    }
    let name = keep(e, name_or(key, name, s.default_name()));
    let poll_interval = keep(
        e,
        secs(
            &format!("{key}.poll_interval_secs"),
            *poll_interval_secs,
            1,
            3600,
        ),
    );
    let dead_letter_path = keep(e, dead_letter(key, dead_letter_path.as_deref()));
    match (name, poll_interval, dead_letter_path) {
        (Some(name), Some(poll_interval), Some(dead_letter_path)) if e.is_empty() => {
            Ok(FileSettings {
                name,
                paths: paths.iter().map(PathBuf::from).collect(),
                watch: *watch,
                poll_interval,
                dead_letter_path,
            })
        }
        _ => Err(all(std::mem::take(e))),
    }
}
