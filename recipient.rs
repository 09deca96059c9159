//! Well-formedness check of age X25519 recipients (`age1…`), without dependencies.
//!
//! A recipient is the Bech32 encoding (BIP 173, lower case) of a 32-byte X25519 public key
//! under the human-readable part `age`: `age1`, 52 data symbols (the last with 4 zero padding
//! bits) and a 6-symbol checksum, 62 characters in all. Only a public key is ever accepted.

/// Length of an age X25519 recipient.
pub const RECIPIENT_LEN: usize = 62;

/// The Bech32 alphabet.
const CHARSET: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/// Generator of the Bech32 checksum.
const GENERATOR: [u32; 5] = [
    0x3b6a_57b2,
    0x2650_8e6d,
    0x1ea1_19fa,
    0x3d42_33dd,
    0x2a14_62b3,
];

/// The human-readable part of age recipients.
const HRP: &[u8] = b"age";

/// One step of the Bech32 checksum over the 5-bit `value`.
fn polymod_step(checksum: u32, value: u8) -> u32 {
    let top = checksum.wrapping_shr(25);
    let mut next = (checksum & 0x01ff_ffff).wrapping_shl(5) ^ u32::from(value);
    for (bit, generator) in (0u32..).zip(GENERATOR.iter()) {
        if top.wrapping_shr(bit) & 1 == 1 {
            next ^= generator;
        }
    }
    next
}

/// Whether `recipient` is a well-formed age X25519 recipient.
pub fn is_well_formed(recipient: &str) -> bool {
    let bytes = recipient.as_bytes();
    if bytes.len() != RECIPIENT_LEN || !recipient.starts_with("age1") {
        return false;
    }
    let mut checksum = 1u32;
    for &c in HRP {
        checksum = polymod_step(checksum, c.wrapping_shr(5));
    }
    checksum = polymod_step(checksum, 0);
    for &c in HRP {
        checksum = polymod_step(checksum, c & 31);
    }
    let data = &bytes[HRP.len().saturating_add(1)..];
    let mut last_key_symbol = 0u8;
    for (index, &symbol) in data.iter().enumerate() {
        let Some((value, _)) = (0u8..).zip(CHARSET.iter()).find(|&(_, &c)| c == symbol) else {
            return false;
        };
        if index == 51 {
            last_key_symbol = value;
        }
        checksum = polymod_step(checksum, value);
    }
    // 52 symbols carry 260 bits for a 256-bit key: the last 4 must be zero.
    checksum == 1 && last_key_symbol & 0x0f == 0
}

#[cfg(test)]
mod tests {
    use super::{is_well_formed, RECIPIENT_LEN};

    /// Recipients made by `age-keygen` (from the age specification's examples and the age
    /// crate).
    const VALID: [&str; 2] = [
        "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p",
        "age1fckj4428g9kcnc3rexmaa8hv7r6v00c32a4j6tp6m9l4m66lma5qd4n2jw",
    ];

    #[test]
    fn accepts_real_recipients() {
        for recipient in VALID {
            assert_eq!(recipient.len(), RECIPIENT_LEN);
            assert!(is_well_formed(recipient), "{recipient}");
        }
    }

    #[test]
    fn rejects_malformed_recipients() {
        let valid = VALID[0];
        let mut flipped = valid.as_bytes().to_vec();
        flipped[20] = if flipped[20] == b'q' { b'p' } else { b'q' };
        let flipped = String::from_utf8(flipped).unwrap();
        let upper = valid.to_uppercase();
        let secret = "AGE-SECRET-KEY-1GQ9778VQXMMJVE8SK7J6VT8UJ4HDQAJUVSFCWCM02D8GEWQ72PVQ2Y5J33";
        for bad in [
            "",
            "age1",
            &valid[..61],
            &format!("{valid}q"),
            &flipped,
            &upper,
            &valid.replacen("age1", "agf1", 1),
            &valid.replacen('q', "b", 1),
            secret,
        ] {
            assert!(!is_well_formed(bad), "{bad}");
        }
    }
}
