//! A configuration with every sender kind, for the ingest tests.

/// Every sender kind, one source each, plus a few variants.
pub const ALL_KINDS: &str = r#"
[[sources]]
name = "chatwoot"
kind = "chatwoot"
secrets = ["cw-secret-old", "cw-secret"]

[[sources]]
name = "pluggy"
kind = "pluggy"
secrets = ["pluggy-secret"]

[[sources]]
name = "c2s"
kind = "c2s"
secrets = ["c2s-secret"]

[[sources]]
name = "standard-webhooks"
kind = "standard-webhooks"
secrets = ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

[[sources]]
name = "github"
kind = "github"
secrets = ["It's a Secret to Everybody"]

[[sources]]
name = "stripe"
kind = "stripe"
secrets = ["whsec_stripe_test_secret"]

[[sources]]
name = "shopify"
kind = "shopify"
secrets = ["shopify-secret"]

[[sources]]
name = "slack"
kind = "slack"
secrets = ["slack-secret"]

[[sources]]
name = "hmac"
kind = "hmac"
secrets = ["hmac-secret"]
signature_header = "X-Signature"
signature_prefix = "sha256="
signature_encoding = "base64"
idempotency_key = ["/data/n", "header:X-Tenant"]

[[sources]]
name = "token"
kind = "token"
secrets = ["tok-123"]

[[sources]]
name = "github-path"
kind = "github"
secrets = ["gh-secret"]
path_token = "pt-123"

[[sources]]
name = "small"
kind = "pluggy"
secrets = ["small-secret"]
max_body_bytes = 64
"#;
