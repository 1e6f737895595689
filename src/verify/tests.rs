//! What a forged multi-signature header costs (MACs over the body are counted, never timed),
//! and which headers carry a signature, so that destinations never receive them.

use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};

use super::mac::macs_computed;
use super::*;

const NOW: i64 = 1_700_000_000;
const STRIPE_SECRETS: [&str; 2] = ["whsec_old", "whsec_new"];
const SW_SECRETS: [&str; 2] = [
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "whsec_dGhlIG90aGVyIGtleQ==",
];

fn verifier(kind: Kind, secrets: &[&str]) -> Box<dyn Verifier> {
    build(Spec {
        kind,
        secrets: secrets.to_vec(),
        tolerance_seconds: 300,
        signature_header: None,
        signature_prefix: None,
        signature_encoding: None,
    })
    .expect("verifier")
}

/// Verifies `headers` over a 1 MiB body; the result and the MACs it cost.
fn verify_counting(
    v: &dyn Verifier,
    headers: &[(&str, String)],
) -> (Result<(), VerifyError>, usize) {
    let mut map = HeaderMap::new();
    for (k, val) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(val).expect("value"),
        );
    }
    let body = vec![b'x'; 1 << 20];
    let before = macs_computed();
    let result = v.verify(&Inbound {
        headers: &map,
        body: &body,
        path_token: None,
        now: NOW,
    });
    (result, macs_computed() - before)
}

fn stripe_header(candidates: usize) -> String {
    let v1: String = (0..candidates)
        .map(|i| format!(",v1={}", hex::encode([i as u8; 32])))
        .collect();
    format!("t={NOW}{v1}")
}

fn sw_headers(candidates: usize) -> Vec<(&'static str, String)> {
    let sigs: Vec<String> = (0..candidates)
        .map(|i| format!("v1,{}", base64_std(&[i as u8; 32])))
        .collect();
    vec![
        ("webhook-id", "msg_1".into()),
        ("webhook-timestamp", NOW.to_string()),
        ("webhook-signature", sigs.join(" ")),
    ]
}

#[test]
fn stripe_header_at_the_cap_costs_one_mac_per_secret() {
    let v = verifier(Kind::Stripe, &STRIPE_SECRETS);
    let header = stripe_header(MAX_CANDIDATES);
    let (result, macs) = verify_counting(&*v, &[("stripe-signature", header)]);
    assert_eq!(result, Err(VerifyError::BadSignature));
    assert_eq!(macs, STRIPE_SECRETS.len());
}

#[test]
fn stripe_header_over_the_cap_costs_no_mac() {
    let v = verifier(Kind::Stripe, &STRIPE_SECRETS);
    let header = stripe_header(125);
    assert!(
        header.len() >= 8 * 1024,
        "an 8 KiB header: {}",
        header.len()
    );
    let (result, macs) = verify_counting(&*v, &[("stripe-signature", header)]);
    let err = result.expect_err("refused");
    assert_eq!(err, VerifyError::TooManySignatures("stripe-signature"));
    assert_eq!(err.code(), "invalid_signature");
    assert_eq!(macs, 0);
}

#[test]
fn stripe_empty_candidates_cost_no_mac() {
    let v = verifier(Kind::Stripe, &STRIPE_SECRETS);
    let header = format!("t={NOW}{}", ",v1=".repeat(2000));
    let (result, macs) = verify_counting(&*v, &[("stripe-signature", header)]);
    assert_eq!(result, Err(VerifyError::BadSignature));
    assert_eq!(macs, 0);
}

#[test]
fn stripe_good_signature_among_the_candidates_is_accepted() {
    let v = verifier(Kind::Stripe, &STRIPE_SECRETS[1..]);
    let body = vec![b'x'; 1 << 20];
    let good = v.sign(&body, NOW).headers.remove(0).1;
    let good = good.split_once(",v1=").expect("v1").1.to_string();
    let header = format!("{},v1={good}", stripe_header(MAX_CANDIDATES - 1));
    let (result, macs) = verify_counting(&*v, &[("stripe-signature", header)]);
    assert_eq!((result, macs), (Ok(()), 1));
}

#[test]
fn standard_webhooks_header_at_the_cap_costs_one_mac_per_secret() {
    let v = verifier(Kind::StandardWebhooks, &SW_SECRETS);
    let (result, macs) = verify_counting(&*v, &sw_headers(MAX_CANDIDATES));
    assert_eq!(result, Err(VerifyError::BadSignature));
    assert_eq!(macs, SW_SECRETS.len());
}

#[test]
fn standard_webhooks_header_over_the_cap_costs_no_mac() {
    let v = verifier(Kind::StandardWebhooks, &SW_SECRETS);
    let headers = sw_headers(180);
    assert!(headers[2].1.len() >= 8 * 1024);
    let (result, macs) = verify_counting(&*v, &headers);
    assert_eq!(
        result,
        Err(VerifyError::TooManySignatures("webhook-signature"))
    );
    assert_eq!(macs, 0);
}

#[test]
fn malformed_single_signatures_cost_no_mac() {
    let v = verifier(Kind::Github, &["s"]);
    for sig in ["sha256=", "sha256=zz", "sha256=abcd"] {
        let (result, macs) = verify_counting(&*v, &[("x-hub-signature-256", sig.into())]);
        assert_eq!((result, macs), (Err(VerifyError::BadSignature), 0), "{sig}");
    }
}

// ---- which headers carry the signature (never forwarded to destinations) ------------------

/// A verifier of every kind, built as a source of that kind would build it.
fn every_kind() -> Vec<(Kind, Box<dyn Verifier>)> {
    Kind::ALL
        .into_iter()
        .map(|kind| {
            let secrets: &[&str] = match kind {
                Kind::StandardWebhooks => &SW_SECRETS[..1],
                _ => &["s3cret"],
            };
            let v = build(Spec {
                kind,
                secrets: secrets.to_vec(),
                tolerance_seconds: 300,
                signature_header: (kind == Kind::Hmac).then_some("X-Signature"),
                signature_prefix: None,
                signature_encoding: None,
            })
            .expect("verifier");
            (kind, v)
        })
        .collect()
}

/// Verifies `body` with these headers, at NOW.
fn verify_with(
    v: &dyn Verifier,
    headers: &[(String, String)],
    body: &[u8],
    token: Option<&str>,
) -> Result<(), VerifyError> {
    let mut map = HeaderMap::new();
    for (k, val) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).expect("name"),
            HeaderValue::from_str(val).expect("value"),
        );
    }
    v.verify(&Inbound {
        headers: &map,
        body,
        path_token: token,
        now: NOW,
    })
}

#[test]
fn every_header_the_signature_depends_on_is_a_signature_or_secret_header() {
    let body = br#"{"id":"evt_1","event":"x","type":"x"}"#;
    for (kind, v) in every_kind() {
        let signed = v.sign(body, NOW);
        let token = signed.path_token.as_deref();
        assert_eq!(
            verify_with(&*v, &signed.headers, body, token),
            Ok(()),
            "{kind}"
        );
        let hidden: Vec<String> = v
            .signature_headers()
            .into_iter()
            .chain(v.secret_headers().iter().map(|h| h.to_string()))
            .collect();
        assert!(
            hidden.iter().all(|h| *h == h.to_ascii_lowercase()),
            "{kind}: names are lower-case: {hidden:?}"
        );
        for (name, _) in &signed.headers {
            let without: Vec<_> = signed
                .headers
                .iter()
                .filter(|(n, _)| n != name)
                .cloned()
                .collect();
            let needed = verify_with(&*v, &without, body, token).is_err();
            // Standard Webhooks signs over its message id, which is no secret: hookgate
            // replaces `webhook-id` on delivery anyway.
            if needed && name != "webhook-id" {
                assert!(
                    hidden.contains(&name.to_ascii_lowercase()),
                    "{kind}: {name} carries the signature but is not in signature_headers {hidden:?}"
                );
            }
        }
    }
}

#[test]
fn signature_headers_name_each_kinds_signature_and_not_its_ids() {
    let expected: [(Kind, &[&str]); 10] = [
        (
            Kind::Chatwoot,
            &["x-chatwoot-signature", "x-chatwoot-timestamp"],
        ),
        (Kind::Pluggy, &[]),
        (Kind::C2s, &["x-c2s-signature"]),
        (
            Kind::StandardWebhooks,
            &["webhook-signature", "webhook-timestamp"],
        ),
        (Kind::Github, &["x-hub-signature-256", "x-hub-signature"]),
        (Kind::Stripe, &["stripe-signature"]),
        (Kind::Shopify, &["x-shopify-hmac-sha256"]),
        (
            Kind::Slack,
            &["x-slack-signature", "x-slack-request-timestamp"],
        ),
        (Kind::Hmac, &["x-signature"]),
        (Kind::Token, &[]),
    ];
    let verifiers = every_kind();
    for (kind, names) in expected {
        let (_, v) = verifiers.iter().find(|(k, _)| *k == kind).expect("kind");
        assert_eq!(v.signature_headers(), names, "{kind}");
    }
    // Ids a sender emits with its signature describe the event: destinations may see them.
    for (kind, v) in &verifiers {
        let sig = v.signature_headers();
        for id in ["x-github-delivery", "x-shopify-webhook-id"] {
            assert!(!sig.iter().any(|s| s == id), "{kind}: {id}");
        }
    }
    let (_, pluggy) = verifiers
        .iter()
        .find(|(k, _)| *k == Kind::Pluggy)
        .expect("pluggy");
    assert_eq!(pluggy.secret_headers(), ["x-webhook-secret"]);
}
