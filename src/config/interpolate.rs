//! `${VAR}` and `${VAR:-default}` in any string of the file, replaced from the environment
//! before the document is deserialized, so every field may use them.

use super::{ConfigError, Env};

/// Replaces `${VAR}` (and `${VAR:-default}`) in every string of the document, noting in
/// `defaulted` the fields that took a default.
pub(super) fn interpolate(
    value: &mut toml::Value,
    path: &str,
    env: Env<'_>,
    defaulted: &mut Vec<String>,
) -> Result<(), ConfigError> {
    match value {
        toml::Value::String(s) if s.contains("${") => {
            let (expanded, used_default) = expand(s, env).map_err(|var| {
                ConfigError::at(path, format!("environment variable {var} is not set"))
            })?;
            if used_default {
                defaulted.push(path.to_string());
            }
            *s = expanded;
        }
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let p = format!("{path}[{i}]");
                interpolate(item, &p, env, defaulted)?;
            }
        }
        toml::Value::Table(table) => {
            let name = table
                .get("name")
                .and_then(|n| n.as_str())
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            for (key, item) in table.iter_mut() {
                let p = format!("{path}{name}.{key}");
                interpolate(item, &p, env, defaulted)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Expands `${VAR}` and `${VAR:-default}`, saying whether a default was used; the error is
/// the name of the first unset variable.
pub fn expand(input: &str, env: Env<'_>) -> Result<(String, bool), String> {
    let mut used_default = false;
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok((out, used_default));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (env(name).filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => {
                used_default = true;
                out.push_str(d);
            }
            (None, None) => return Err(name.to_string()),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, used_default))
}

#[cfg(test)]
mod tests {
    use super::super::{load_inline as load, PLUGGY};
    use super::*;

    #[test]
    fn missing_variable_names_the_variable_and_field() {
        let err = load(PLUGGY, &[]).unwrap_err().to_string();
        assert!(err.contains("PLUGGY_SECRET"), "{err}");
        assert!(err.contains("sources[0] (pluggy).secrets[0]"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn default_value_in_interpolation() {
        assert_eq!(
            expand("a${X:-b}c", &|_| None),
            Ok(("abc".to_string(), true))
        );
        assert_eq!(
            expand("${X}", &|_| Some("v".into())),
            Ok(("v".to_string(), false))
        );
        assert_eq!(
            expand("${X:-d}", &|_| Some("v".into())),
            Ok(("v".to_string(), false))
        );
    }
}
