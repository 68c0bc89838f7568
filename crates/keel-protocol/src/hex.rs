//! Bytes as lower-case hexadecimal text: digests in headers and replies,
//! page cursors, keys in error messages, key files.

/// Why text is not hex of whole bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HexError {
    /// An odd number of characters: the last byte is half there.
    #[error("{len} characters, not an even number")]
    OddLength {
        /// The text's length in bytes.
        len: usize,
    },
    /// A byte that is not a hex digit (`0-9`, `a-f`, `A-F`).
    #[error("byte {at} is not a hex digit")]
    NotHex {
        /// Its offset in the text.
        at: usize,
    },
}

const DIGITS: &[u8; 16] = b"0123456789abcdef";

/// `bytes` as lower-case hex, two digits a byte.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The bytes `text` is the hex of; either case is accepted, nothing else
/// (no prefix, sign, space or separator).
pub fn decode(text: &str) -> Result<Vec<u8>, HexError> {
    let text = text.as_bytes();
    if text.len() % 2 != 0 {
        return Err(HexError::OddLength { len: text.len() });
    }
    let digit = |at: usize| nibble(text[at]).ok_or(HexError::NotHex { at });
    (0..text.len())
        .step_by(2)
        .map(|at| Ok((digit(at)? << 4) | digit(at + 1)?))
        .collect()
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_lower_case_two_digits_a_byte() {
        assert_eq!(encode(&[]), "");
        assert_eq!(encode(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
    }

    #[test]
    fn decodes_what_it_encodes() {
        let every_byte: Vec<u8> = (0..=255).collect();
        assert_eq!(decode(&encode(&every_byte)), Ok(every_byte));
    }

    #[test]
    fn decodes_either_case() {
        assert_eq!(decode("A5fF"), Ok(vec![0xa5, 0xff]));
        assert_eq!(decode(""), Ok(vec![]));
    }

    #[test]
    fn refuses_half_a_byte() {
        assert_eq!(decode("abc"), Err(HexError::OddLength { len: 3 }));
    }

    #[test]
    fn refuses_anything_but_hex_digits_and_says_where() {
        assert_eq!(decode("0g"), Err(HexError::NotHex { at: 1 }));
        assert_eq!(decode("zz00"), Err(HexError::NotHex { at: 0 }));
        // What a lenient integer parser would take: a sign, a prefix, space.
        assert_eq!(decode("+f"), Err(HexError::NotHex { at: 0 }));
        assert_eq!(decode("0x00"), Err(HexError::NotHex { at: 1 }));
        assert_eq!(decode(" f"), Err(HexError::NotHex { at: 0 }));
        // A character of two bytes: not hex, and no panic on its boundary.
        assert_eq!(decode("é"), Err(HexError::NotHex { at: 0 }));
        assert_eq!(decode("0é0"), Err(HexError::NotHex { at: 1 }));
    }
}
