//! Well-formedness check of IPFS content identifiers, without allocation-heavy dependencies.
//!
//! A CID is accepted only in the forms IPFS and the bots produce for a snapshot's blocks: a
//! 32-byte sha2-256 multihash (`0x12 0x20` + digest) of a raw or dag-pb block.
//! - CIDv0: 46 characters of base58btc starting with `Qm`, i.e. a sha2-256 multihash.
//! - CIDv1: multibase `b` (base32, lower case, no padding) of
//!   `varint(1) varint(codec) 0x12 0x20 digest`, with codec raw (`0x55`) or dag-pb (`0x70`).
//!
//! Any other hash function, a truncated digest or an identity multihash would let one content
//! be recorded as several snapshots (and names no block a bot makes), so it is refused.
//!
//! Only these canonical string forms are accepted (those `ipfs add` prints), with minimal
//! varints (as go-cid and Kubo require): other multibases and padded varints are refused.
//!
//! The registry indexes a snapshot by its CID's multihash, the hash of the block's bytes, not
//! by the string: a CIDv0 and its CIDv1 form (dag-pb, same multihash) name one snapshot, and
//! so do a raw and a dag-pb CID of the same multihash, which name the same bytes.

use ink::prelude::vec::Vec;

/// The Bitcoin base58 alphabet of CIDv0.
const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// The raw codec: a block of plain bytes.
const RAW: u64 = 0x55;
/// The dag-pb codec: a UnixFS node.
const DAG_PB: u64 = 0x70;

/// The multihash of an accepted CIDv0 or CIDv1 string (`0x12 0x20` and the 32-byte sha2-256
/// digest, as the CID's bytes hold them), or `None` when `cid` is not one.
pub fn multihash(cid: &str) -> Option<Vec<u8>> {
    let bytes = cid.as_bytes();
    let multihash = if bytes.len() == 46 && cid.starts_with("Qm") {
        decode_base58(bytes)?
    } else {
        let raw = decode_base32(bytes.strip_prefix(b"b")?)?;
        let mut rest = &raw[..];
        let version = read_varint(&mut rest)?;
        let codec = read_varint(&mut rest)?;
        if version != 1 || (codec != RAW && codec != DAG_PB) {
            return None;
        }
        rest.to_vec()
    };
    is_sha2_256(&multihash).then_some(multihash)
}

/// Whether `multihash` is a complete sha2-256 multihash: `0x12 0x20` and 32 bytes.
fn is_sha2_256(multihash: &[u8]) -> bool {
    multihash.len() == 34 && multihash.starts_with(&[0x12, 0x20])
}

/// Reads one unsigned LEB128 varint in its minimal form (at most 9 bytes, as multiformats
/// allows), advancing `input`.
fn read_varint(input: &mut &[u8]) -> Option<u64> {
    let mut value: u64 = 0;
    let mut shift: u32 = 0;
    while let Some((&byte, rest)) = input.split_first() {
        *input = rest;
        value |= u64::from(byte & 0x7f).checked_shl(shift)?;
        if byte & 0x80 == 0 {
            // A last byte of zero after others only pads: not the minimal form.
            return (byte != 0 || shift == 0).then_some(value);
        }
        shift = shift.wrapping_add(7);
        if shift > 56 {
            return None;
        }
    }
    None
}

/// RFC 4648 base32, lower case, without padding.
fn decode_base32(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len());
    // Holds fewer than 8 pending bits between symbols, so the shifts below never overflow.
    let mut buffer: u32 = 0;
    let mut bits: u32 = 0;
    for &symbol in text {
        let value = match symbol {
            b'a'..=b'z' => symbol.wrapping_sub(b'a'),
            b'2'..=b'7' => symbol.wrapping_sub(b'2').wrapping_add(26),
            _ => return None,
        };
        buffer = buffer.wrapping_shl(5) | u32::from(value);
        bits = bits.wrapping_add(5);
        if bits >= 8 {
            bits = bits.wrapping_sub(8);
            out.push(low_byte(buffer.wrapping_shr(bits)));
            buffer &= 1u32.wrapping_shl(bits).wrapping_sub(1);
        }
    }
    // Leftover bits are padding and must be zero (a canonical encoding).
    (bits < 5 && buffer == 0).then_some(out)
}

/// Base58btc (big-endian base conversion; inputs are short, so quadratic time is fine).
fn decode_base58(text: &[u8]) -> Option<Vec<u8>> {
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for &symbol in text {
        let digit = BASE58_ALPHABET.iter().position(|&a| a == symbol)?;
        // `carry` stays below 58 * 256, far from overflowing.
        let mut carry = u32::try_from(digit).ok()?;
        for byte in out.iter_mut().rev() {
            carry = carry.wrapping_add(u32::from(*byte).wrapping_mul(58));
            *byte = low_byte(carry);
            carry = carry.wrapping_shr(8);
        }
        while carry > 0 {
            out.insert(0, low_byte(carry));
            carry = carry.wrapping_shr(8);
        }
    }
    let leading_zeros = text.iter().take_while(|&&symbol| symbol == b'1').count();
    let mut decoded = Vec::with_capacity(text.len());
    decoded.resize(leading_zeros, 0);
    decoded.extend_from_slice(&out);
    Some(decoded)
}

/// The least significant byte of `value`.
fn low_byte(value: u32) -> u8 {
    value.to_le_bytes()[0]
}

#[cfg(test)]
mod tests {
    use super::multihash;

    fn is_well_formed(cid: &str) -> bool {
        multihash(cid).is_some()
    }

    #[test]
    fn accepts_real_cids() {
        // A CIDv0 and its CIDv1 (dag-pb) form, as the npm `multiformats` package converts it.
        assert!(is_well_formed(
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
        ));
        assert!(is_well_formed(
            "bafybeie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34"
        ));
        // Kubo's CIDv1 (raw leaves) of the empty file.
        assert!(is_well_formed(
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"
        ));
    }

    #[test]
    fn rejects_malformed_cids() {
        for bad in [
            "",
            "Qm",
            "hello",
            // v0 with a character outside base58 (0).
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd0",
            // v0 one character short.
            "QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbd",
            // v1 truncated digest.
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk",
            // v1 with a character outside base32.
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyk1",
            // Mixed case base32.
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyKU",
            // The empty file's CID in other multibases than base32 lower case: base32 upper,
            // base58btc, base16, base64. A CID has one accepted string.
            "BAFKREIHDWDCEFGH4DQKJV67UZCMW7OJEE6XEDZDETOJUZJEVTENXQUVYKU",
            "zb2rhe5P4gXftAwvA4eXQ5HJwsER2owDyS9sKaQRRVQPn93bA",
            "f01551220e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "mAXASIOOwxEKY/BwUmvv0yJlvuSQnrkHkZJuTTKSVmRt4UrhV",
            // Version 2.
            "bajkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku",
            // Trailing bytes after the digest.
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvykuaa",
            // Non-zero padding bits in the last symbol.
            "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvykv",
            // The empty file's CID with its version written as the padded varint 0x81 0x00.
            "bqeafkera4oymiquy7qobjgx36tejs35zeqt24qpemsnzgtfeswmrw6csxbkq",
        ] {
            assert!(!is_well_formed(bad), "accepted {bad:?}");
        }
    }

    #[test]
    fn rejects_what_no_bot_makes() {
        use crate::testing::support::cid_string;
        let digest = [7u8; 32];
        for (what, binary) in [
            (
                "sha2-256 cut to 20 bytes",
                [&[0x01, 0x55, 0x12, 0x14][..], &digest[..20]].concat(),
            ),
            (
                "identity multihash",
                [&[0x01, 0x55, 0x00, 0x20][..], &digest[..]].concat(),
            ),
            (
                "sha2-512",
                [&[0x01, 0x55, 0x13, 0x40][..], &[7; 64][..]].concat(),
            ),
            (
                "blake2b-256",
                [&[0x01, 0x55, 0xa0, 0xe4, 0x02, 0x20][..], &digest[..]].concat(),
            ),
            (
                "dag-cbor codec",
                [&[0x01, 0x71, 0x12, 0x20][..], &digest[..]].concat(),
            ),
            (
                "sha2-256 with a byte after it",
                [&[0x01, 0x55, 0x12, 0x20][..], &[7; 33][..]].concat(),
            ),
        ] {
            assert!(
                !is_well_formed(&cid_string(&binary)),
                "accepted a {what} CID"
            );
        }
        // The same digest as raw and as dag-pb is accepted.
        for codec in [0x55, 0x70] {
            let binary = [&[0x01, codec, 0x12, 0x20][..], &digest[..]].concat();
            assert!(is_well_formed(&cid_string(&binary)));
        }
        // A CIDv0 spelling whose base58 decodes to `0x12 0x1e …`, not a sha2-256 multihash.
        let qm_ones = format!("Qm{}", "1".repeat(44));
        assert!(!is_well_formed(&qm_ones));
    }

    #[test]
    fn aliases_share_one_multihash() {
        // A CIDv0 and its CIDv1 (dag-pb, base32), as the npm `multiformats` package converts it.
        let v0 = multihash("QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG").unwrap();
        let v1 = multihash("bafybeie5nqv6kd3qnfjupgvz34woh3oksc3iau6abmyajn7qvtf6d2ho34").unwrap();
        assert_eq!(v0, v1);
        assert_eq!(&v0[..2], &[0x12, 0x20]);
        assert_eq!(v0.len(), 34);
        // The empty file as raw and as dag-pb CIDv1: the same sha2-256 of the same bytes.
        let raw = multihash("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap();
        let dag_pb =
            multihash("bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku").unwrap();
        assert_eq!(raw, dag_pb);
        assert_ne!(raw, v0);
    }
}
