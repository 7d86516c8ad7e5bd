//! Reading the file: TOML parsed, `${VAR}` references in string values
//! expanded, then the raw structs deserialised with the key path of any
//! error.

use std::collections::HashMap;
use std::path::Path;

use super::{ConfigError, RawConfig, Settings, invalid, validate};

/// Reads, interpolates and validates a config file.
pub fn load(path: &Path) -> Result<(RawConfig, Settings), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let raw = parse(&text, &|k| env.get(k).cloned())?;
    let settings = validate(&raw)?;
    Ok((raw, settings))
}

/// Parses TOML text, replacing `${NAME}` in every string value with
/// `lookup(NAME)` (`${NAME:-default}` when it is unset or empty,
/// `${NAME:?message}` an error saying `message`); `$$` is a literal `$`.
/// Interpolating values rather than the file text keeps a secret
/// containing quotes from breaking the TOML. A value that is one reference
/// and nothing else (`max_messages = "${BATCH}"`) may give a number or a
/// boolean where the setting takes one.
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<RawConfig, ConfigError> {
    let mut value: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Syntax(format!("invalid TOML: {e}")))?;
    let mut whole = HashMap::new();
    for (k, v) in value.iter_mut() {
        interpolate(v, k, lookup, &mut whole)?;
    }
    let mut table = toml::Value::Table(value);
    loop {
        // A copy is kept only while a value may still be retyped.
        let attempt = if whole.is_empty() {
            std::mem::replace(&mut table, toml::Value::Boolean(false))
        } else {
            table.clone()
        };
        let e = match serde_path_to_error::deserialize(attempt) {
            Ok(raw) => return Ok(raw),
            Err(e) => e,
        };
        let path = e.path().to_string();
        // A setting that takes a number or a boolean, given a string that
        // came whole from a variable: read the variable's text as TOML.
        if let Some(typed) = whole.remove(&path)
            && let Some(slot) = value_at(&mut table, &path)
        {
            *slot = typed;
            continue;
        }
        let inner = e.into_inner();
        return Err(invalid(
            if path == "." {
                "(top level)".to_owned()
            } else {
                path
            },
            inner.to_string().trim().to_owned(),
        ));
    }
}

/// The value at a path as serde_path_to_error writes it (`a.b[2].c`).
fn value_at<'v>(v: &'v mut toml::Value, path: &str) -> Option<&'v mut toml::Value> {
    let mut v = v;
    for part in path.split('.') {
        let (name, indexes) = part.split_once('[').unwrap_or((part, ""));
        if !name.is_empty() {
            v = v.get_mut(name)?;
        }
        for index in indexes.split('[').filter(|i| !i.is_empty()) {
            v = v.get_mut(index.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(v)
}

/// Expands the references in every string under `v`, whose key path is
/// `key`; a string that was one reference whose text reads as a TOML
/// number or boolean is noted in `whole`, by path, with that value.
fn interpolate(
    v: &mut toml::Value,
    key: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    whole: &mut HashMap<String, toml::Value>,
) -> Result<(), ConfigError> {
    match v {
        toml::Value::String(s) if s.contains('$') => {
            let one_reference = s.starts_with("${") && s.find('}') == Some(s.len() - 1);
            *s = expand(s, lookup).map_err(|m| invalid(key, m))?;
            if one_reference && let Some(typed) = scalar(s) {
                whole.insert(key.to_owned(), typed);
            }
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                interpolate(item, &format!("{key}[{i}]"), lookup, whole)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, item) in t.iter_mut() {
                interpolate(item, &format!("{key}.{k}"), lookup, whole)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// `30`, `0.5`, `true`: the number or boolean a text reads as in TOML.
fn scalar(text: &str) -> Option<toml::Value> {
    let v: toml::Table = format!("v = {}", text.trim()).parse().ok()?;
    v.get("v")
        .filter(|v| {
            matches!(
                v,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_)
            )
        })
        .cloned()
}

pub(super) fn expand(s: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(r) = after.strip_prefix('$') {
            out.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or("`${` without a closing `}`")?;
            let reference = &r[..end];
            // `NAME`, `NAME:-default` or `NAME:?message`.
            let (name, fallback) = match reference.find(':') {
                Some(i) => (&reference[..i], Some(&reference[i..])),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{reference}}}` is not a valid environment variable reference"
                ));
            }
            let (default, message) = match fallback {
                None => (None, None),
                Some(f) => match (f.strip_prefix(":-"), f.strip_prefix(":?")) {
                    (Some(d), _) => (Some(d), None),
                    (_, Some(m)) => (None, Some(m)),
                    _ => {
                        return Err(format!(
                            "`${{{reference}}}`: after the name, `:-default` or `:?message`"
                        ));
                    }
                },
            };
            let set = lookup(name).filter(|v| !v.is_empty() || fallback.is_none());
            let value = match (set, default, message) {
                (Some(v), _, _) => v,
                (None, Some(d), _) => d.to_owned(),
                (None, None, Some(m)) if !m.is_empty() => {
                    return Err(format!("environment variable `{name}` is not set: {m}"));
                }
                (None, None, _) => return Err(format!("environment variable `{name}` is not set")),
            };
            out.push_str(&value);
            rest = &r[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}
