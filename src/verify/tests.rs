//! What a forged multi-signature header costs: MACs over the body are counted, never timed.

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
