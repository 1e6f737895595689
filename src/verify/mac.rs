//! The MAC and comparison primitives every scheme shares. All HMACs over a body go through
//! [`hmac_sha256`], so the cost of a request is one MAC per configured secret, whatever its
//! headers offer, and the tests can count them.

use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::VerifyError;
use crate::signature_kind::Encoding;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Most signatures one header may offer. Senders send one, or two while rotating; the cap
/// keeps a forged header from costing thousands of decodes and comparisons.
pub const MAX_CANDIDATES: usize = 8;

/// An HMAC-SHA256 output, the only length a candidate signature can usefully have.
pub type Mac32 = [u8; 32];

#[cfg(test)]
thread_local! {
    static MACS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// How many HMACs this thread computed so far (tests only).
#[cfg(test)]
pub fn macs_computed() -> usize {
    MACS.with(|m| m.get())
}

/// HMAC-SHA256 of the concatenated parts.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Mac32 {
    #[cfg(test)]
    MACS.with(|m| m.set(m.get() + 1));
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Decodes the signature entries of a header (`None`: an entry of a scheme not compared,
/// such as another version). Empty entries are skipped, entries that do not decode to 32
/// bytes can never match and are dropped, and more than [`MAX_CANDIDATES`] entries refuse
/// the header before any MAC is computed.
pub fn candidates<'a>(
    entries: impl IntoIterator<Item = Option<&'a str>>,
    encoding: Encoding,
    header: &'static str,
) -> Result<Vec<Mac32>, VerifyError> {
    let mut out = Vec::new();
    let mut seen = 0;
    for entry in entries.into_iter().map(|e| e.map(str::trim)) {
        if entry == Some("") {
            continue;
        }
        seen += 1;
        if seen > MAX_CANDIDATES {
            return Err(VerifyError::TooManySignatures(header));
        }
        let decoded = entry.and_then(|e| encoding.decode(e));
        if let Some(mac) = decoded.and_then(|b| Mac32::try_from(b).ok()) {
            out.push(mac);
        }
    }
    Ok(out)
}

/// Whether any key signs the parts to any candidate: one MAC per key, none when there is
/// no candidate, each compared in constant time against every candidate.
pub fn any_matches<K: AsRef<[u8]>>(keys: &[K], parts: &[&[u8]], candidates: &[Mac32]) -> bool {
    if candidates.is_empty() {
        return false;
    }
    // No early exit: which secret or candidate matched must not show in the timing.
    let mut ok = false;
    for key in keys {
        let mac = hmac_sha256(key.as_ref(), parts);
        for candidate in candidates {
            ok |= bool::from(mac.ct_eq(candidate));
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
    // Hash the provided value once: it comes from the request and may be long.
    let provided = Sha256::digest(provided.as_bytes());
    let mut ok = false;
    for s in secrets {
        ok |= bool::from(
            Sha256::digest(s.as_bytes())
                .as_slice()
                .ct_eq(provided.as_slice()),
        );
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY_LEN: usize = 1 << 20;

    fn hex_entries(n: usize) -> String {
        (0..n)
            .map(|i| format!("v1={}", hex::encode([i as u8; 32])))
            .collect::<Vec<_>>()
            .join(",")
    }

    #[test]
    fn one_mac_per_key_whatever_the_candidates() {
        let body = vec![b'x'; BODY_LEN];
        let keys = [b"k1".to_vec(), b"k2".to_vec()];
        let header = hex_entries(MAX_CANDIDATES);
        let list = candidates(
            header.split(',').map(|e| e.strip_prefix("v1=")),
            Encoding::Hex,
            "h",
        )
        .expect("at the cap");
        assert_eq!(list.len(), MAX_CANDIDATES);
        let before = macs_computed();
        assert!(!any_matches(&keys, &[&body], &list));
        assert_eq!(macs_computed() - before, keys.len());
    }

    #[test]
    fn over_the_cap_is_refused_before_any_mac() {
        // About 8 KiB of candidates, as a forged header would carry.
        let header = hex_entries(125);
        assert!(header.len() > 8 * 1024);
        let before = macs_computed();
        let got = candidates(
            header.split(',').map(|e| e.strip_prefix("v1=")),
            Encoding::Hex,
            "h",
        );
        assert_eq!(got, Err(VerifyError::TooManySignatures("h")));
        assert_eq!(macs_computed(), before);
    }

    #[test]
    fn empty_and_wrong_length_candidates_cost_nothing() {
        let entries = ["", " ", "abcd", "zz"].map(Some);
        let list = candidates(entries, Encoding::Hex, "h").expect("few entries");
        assert!(list.is_empty());
        let before = macs_computed();
        assert!(!any_matches(&[b"k"], &[b"body"], &list));
        assert_eq!(macs_computed(), before);
        // Empty entries do not count toward the cap.
        let many_empty = vec![Some(""); 1000];
        assert_eq!(candidates(many_empty, Encoding::Hex, "h"), Ok(Vec::new()));
    }

    #[test]
    fn a_matching_candidate_among_others_is_found() {
        let mac = hmac_sha256(b"k2", &[b"a", b"b"]);
        let list = [[0u8; 32], mac];
        assert!(any_matches(&[b"k1", b"k2"], &[b"ab"], &list));
        assert!(!any_matches(&[b"k1"], &[b"ab"], &list));
    }

    #[test]
    fn secrets_compare_by_value() {
        assert!(any_secret_eq(&["a".into(), "b".into()], "b"));
        assert!(!any_secret_eq(&["a".into()], "ab"));
    }
}
