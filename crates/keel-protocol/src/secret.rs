//! Comparing a presented secret with the expected one.

use subtle::ConstantTimeEq;

/// Whether `a` and `b` hold the same bytes, in a time that depends on their
/// lengths but never on their contents.
///
/// Every comparison of a token, secret or MAC that a caller presents must
/// go through this: `==` stops at the first differing byte, so how long a
/// refusal takes tells an attacker how much of a guess was right, and lets
/// them find a secret a byte at a time. The length is not hidden; Keel's
/// secrets have public lengths (a token's form is documented).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"keel-cluster-dev";

    #[test]
    fn equal_bytes_are_equal() {
        assert!(constant_time_eq(SECRET, b"keel-cluster-dev"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn any_difference_is_a_difference() {
        let guesses: [&[u8]; 7] = [
            b"Keel-cluster-dev",  // the first byte
            b"keel-cluster-deV",  // the last byte
            b"keel-cluster-deu",  // one bit
            b"keel-cluster-de",   // a prefix
            b"keel-cluster-dev2", // an extension
            b"",
            b"keel-cluster-dev\0",
        ];
        for guess in guesses {
            assert!(!constant_time_eq(SECRET, guess), "{guess:?}");
            assert!(!constant_time_eq(guess, SECRET), "{guess:?}");
        }
    }
}
