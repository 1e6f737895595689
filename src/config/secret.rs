//! Values that must not reach a log: secrets, the passwords inside connection URLs, and the
//! recognition of published placeholder secrets.

use std::fmt;

/// A secret value: never printed by `Debug` or `Display`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }
    /// The secret itself, for the few places that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Shows a connection URL with the password of its userinfo replaced by `***`
/// (`postgres://user:***@host/db`); a URL without a password shows as it is.
#[derive(Clone, Copy)]
pub struct RedactedUrl<'a>(pub &'a str);

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.0;
        // The last '@' ends the userinfo even when the password holds an unescaped '@'; one
        // in the query only hides more than needed, never less.
        if let (Some(scheme), Some(at)) = (url.find("://"), url.rfind('@')) {
            let start = scheme + 3;
            if at > start {
                if let Some((user, _)) = url[start..at].split_once(':') {
                    return write!(f, "{}{user}:***{}", &url[..start], &url[at..]);
                }
            }
        }
        f.write_str(url)
    }
}

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

/// Values shipped in examples or commonly typed for "fill this in"; compared lower-case,
/// letters and digits only, so `change-me-too` and `CHANGE_ME` are both caught.
const PLACEHOLDERS: &[&str] = &[
    "changeme",
    "changemetoo",
    "changeit",
    "replaceme",
    "placeholder",
    "secret",
    "password",
    "token",
    "admin",
    "admintoken",
    "example",
    "todo",
    "xxx",
];

/// Whether a secret is a known placeholder rather than a real secret.
pub fn is_placeholder(value: &str) -> bool {
    let normalized: String = value
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    PLACEHOLDERS.contains(&normalized.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password_only() {
        let cases = [
            (
                "postgres://user:hunter2@db:5432/hookgate",
                "postgres://user:***@db:5432/hookgate",
            ),
            ("redis://:hunter2@redis:6379/0", "redis://:***@redis:6379/0"),
            ("rediss://u:p@ss@r:6380", "rediss://u:***@r:6380"),
            (
                "postgres://postgres@127.0.0.1:5432/hookgate",
                "postgres://postgres@127.0.0.1:5432/hookgate",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
        ];
        for (url, shown) in cases {
            assert_eq!(RedactedUrl(url).to_string(), shown);
            assert_eq!(format!("{:?}", RedactedUrl(url)), format!("{shown:?}"));
        }
    }

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "change-me-too",
            "CHANGE_ME",
            "changeme",
            "<placeholder>",
            "secret",
        ] {
            assert!(is_placeholder(p), "{p}");
        }
        for real in ["3f9c2a7e1b0d4c6a", "change-me-to-something-long", ""] {
            assert!(!is_placeholder(real), "{real}");
        }
    }
}
