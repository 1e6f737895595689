//! Signature schemes: the published vectors, and properties that any change of body, secret
//! or timestamp makes verification fail.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use hookgate::config::{ConfigOrigin, Secret, Settings, SourceConfig};
use hookgate::verify::{self, base64_std, standard_webhooks, Inbound, VerifyError};
use proptest::prelude::*;

fn source(kind: &str, secret: &str, extra: &str) -> SourceConfig {
    let toml =
        format!("[[sources]]\nname = \"s\"\nkind = \"{kind}\"\nsecrets = [\"{secret}\"]\n{extra}");
    let settings =
        Settings::from_toml(&toml, ConfigOrigin::Inline, &|_| None).expect("valid source");
    settings.sources[0].clone()
}

fn headers(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("header name"),
            HeaderValue::from_str(v).expect("header value"),
        );
    }
    map
}

fn check(
    source: &SourceConfig,
    signed_with: &SourceConfig,
    body: &[u8],
    signed_at: i64,
    now: i64,
    sent: &[u8],
) -> Result<(), VerifyError> {
    let signer = verify::build(signed_with).expect("signer");
    let signed = signer.sign(body, signed_at);
    let map = headers(&signed.headers);
    let verifier = verify::build(source).expect("verifier");
    verifier.verify(&Inbound {
        headers: &map,
        body: sent,
        path_token: signed.path_token.as_deref(),
        now,
    })
}

#[test]
fn standard_webhooks_published_vector() {
    let key =
        standard_webhooks::decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("secret");
    let body = br#"{"test": 2432232314}"#;
    let sig = standard_webhooks::signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
    assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");

    let src = source(
        "standard-webhooks",
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "",
    );
    let map = headers(&[
        ("webhook-id".into(), "msg_p5jXN8AQM9LWM0D4loKWxJek".into()),
        ("webhook-timestamp".into(), "1614265330".into()),
        // Several signatures, space separated: one valid is enough.
        ("webhook-signature".into(), format!("v1,AAAA {sig}")),
    ]);
    let v = verify::build(&src).expect("verifier");
    let at = |now| {
        v.verify(&Inbound {
            headers: &map,
            body,
            path_token: None,
            now,
        })
    };
    assert_eq!(at(1614265330), Ok(()));
    assert_eq!(
        at(1614265330 + 301),
        Err(VerifyError::TimestampOutOfTolerance)
    );
}

#[test]
fn github_published_vector() {
    let mac = verify::hmac_sha256(b"It's a Secret to Everybody", &[b"Hello, World!"]);
    assert_eq!(
        format!("sha256={}", hex::encode(mac)),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    let src = source("github", "It's a Secret to Everybody", "");
    let map = headers(&[(
        "x-hub-signature-256".into(),
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17".into(),
    )]);
    let v = verify::build(&src).expect("verifier");
    assert_eq!(
        v.verify(&Inbound {
            headers: &map,
            body: b"Hello, World!",
            path_token: None,
            now: 0
        }),
        Ok(())
    );
    assert_eq!(
        v.verify(&Inbound {
            headers: &map,
            body: b"Hello, World?",
            path_token: None,
            now: 0
        }),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn stripe_uses_the_whole_secret_string_as_key() {
    let src = source("stripe", "whsec_abc", "");
    let body = br#"{"id":"evt_1"}"#;
    let mac = verify::hmac_sha256(b"whsec_abc", &[b"1700000000.", body]);
    let map = headers(&[(
        "stripe-signature".into(),
        format!("t=1700000000,v1=00ff,v1={}", hex::encode(mac)),
    )]);
    let v = verify::build(&src).expect("verifier");
    assert_eq!(
        v.verify(&Inbound {
            headers: &map,
            body,
            path_token: None,
            now: 1700000010
        }),
        Ok(())
    );
}

#[test]
fn more_than_eight_signatures_are_refused_even_with_a_valid_one() {
    let src = source("stripe", "whsec_abc", "");
    let body = br#"{"id":"evt_1"}"#;
    let good = hex::encode(verify::hmac_sha256(b"whsec_abc", &[b"1700000000.", body]));
    let v = verify::build(&src).expect("verifier");
    let answer = |forged: usize| {
        let v1: String = (0..forged)
            .map(|_| format!(",v1={}", "00".repeat(32)))
            .collect();
        let map = headers(&[(
            "stripe-signature".into(),
            format!("t=1700000000{v1},v1={good}"),
        )]);
        v.verify(&Inbound {
            headers: &map,
            body,
            path_token: None,
            now: 1700000010,
        })
    };
    assert_eq!(answer(verify::MAX_CANDIDATES - 1), Ok(()));
    let refused = answer(verify::MAX_CANDIDATES).expect_err("nine candidates");
    assert_eq!(refused, VerifyError::TooManySignatures("stripe-signature"));
    assert_eq!(refused.code(), "invalid_signature");
}

#[test]
fn secret_comparison_ignores_length_but_not_content() {
    assert!(verify::secret_eq("abc", "abc"));
    assert!(!verify::secret_eq("abc", "abd"));
    assert!(!verify::secret_eq("abc", "abcd"));
}

/// (kind, extra config, has a timestamp, signature covers the body)
const KINDS: &[(&str, &str, bool, bool)] = &[
    ("chatwoot", "", true, true),
    ("pluggy", "", false, false),
    ("c2s", "", false, true),
    ("standard-webhooks", "", true, true),
    ("github", "", false, true),
    ("stripe", "", true, true),
    ("shopify", "", false, true),
    ("slack", "", true, true),
    (
        "hmac",
        "signature_header = \"X-Sig\"\nsignature_encoding = \"base64\"",
        false,
        true,
    ),
    ("token", "", false, false),
];

fn secret_for(kind: &str, raw: &[u8]) -> String {
    match kind {
        "standard-webhooks" => format!("whsec_{}", base64_std(raw)),
        // Tokens are URL path segments.
        _ => format!("k{}", hex::encode(raw)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn signed_bodies_verify_and_any_change_fails(
        kind_index in 0..KINDS.len(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        key in proptest::collection::vec(any::<u8>(), 8..48),
        other_key in proptest::collection::vec(any::<u8>(), 8..48),
        flip in any::<prop::sample::Index>(),
        bit in 0u8..8,
        now in 1_600_000_000i64..1_900_000_000,
        skew in 301i64..100_000,
    ) {
        let (kind, extra, timestamped, signs_body) = KINDS[kind_index];
        let src = source(kind, &secret_for(kind, &key), extra);

        // The sender's own signature verifies.
        prop_assert_eq!(check(&src, &src, &body, now, now, &body), Ok(()));

        // Any flipped bit of the body fails.
        if signs_body && !body.is_empty() {
            let mut tampered = body.clone();
            let i = flip.index(tampered.len());
            tampered[i] ^= 1 << bit;
            prop_assert!(check(&src, &src, &body, now, now, &tampered).is_err());
        }

        // Another secret fails.
        prop_assume!(key != other_key);
        let mut wrong = src.clone();
        wrong.secrets = vec![Secret::new(secret_for(kind, &other_key))];
        prop_assert!(check(&src, &wrong, &body, now, now, &body).is_err());

        // A timestamp outside the window, either side, fails.
        if timestamped {
            prop_assert_eq!(check(&src, &src, &body, now - skew, now, &body), Err(VerifyError::TimestampOutOfTolerance));
            prop_assert_eq!(check(&src, &src, &body, now + skew, now, &body), Err(VerifyError::TimestampOutOfTolerance));
        }
    }
}
