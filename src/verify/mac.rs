//! The MAC and comparison primitives every scheme shares.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// HMAC-SHA256 of the concatenated parts.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Whether `expected` is the HMAC-SHA256 of the parts under `key`, in constant time.
pub fn hmac_matches(key: &[u8], parts: &[&[u8]], expected: &[u8]) -> bool {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.verify_slice(expected).is_ok()
}

/// Whether any key signs the parts to any of the candidate signatures.
pub fn any_matches<K: AsRef<[u8]>>(keys: &[K], parts: &[&[u8]], candidates: &[Vec<u8>]) -> bool {
    // Check every pair without early exit on the secret, so timing says nothing useful.
    let mut ok = false;
    for key in keys {
        for sig in candidates {
            ok |= hmac_matches(key.as_ref(), parts, sig);
        }
    }
    ok
}

/// Compares two secrets in constant time, without leaking their lengths.
pub fn secret_eq(a: &str, b: &str) -> bool {
    let ha = Sha256::digest(a.as_bytes());
    let hb = Sha256::digest(b.as_bytes());
    ha.as_slice().ct_eq(hb.as_slice()).into()
}

/// Whether `provided` equals any of the secrets, in constant time.
pub fn any_secret_eq(secrets: &[String], provided: &str) -> bool {
    let mut ok = false;
    for s in secrets {
        ok |= secret_eq(s, provided);
    }
    ok
}
