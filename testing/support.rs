//! Fixtures shared by the unit, property and e2e tests: the test configuration, CIDs and an
//! age recipient.

use crate::backup_registry::Config;

/// Small limits, so that caps are reached in a few calls.
pub(crate) const TEST_CONFIG: Config = Config {
    max_snapshots_per_backup: 3,
    max_backups_per_account: 2,
    min_frequency: 10,
    max_frequency: 1_000,
    default_frequency: 100,
    claim_timeout: 5,
    upgrade_delay: 3,
};

/// A well-formed CIDv1 (raw, sha2-256, base32) that differs for each `n`: the digest is `n`,
/// big-endian, in 32 bytes.
pub(crate) fn cid(n: u64) -> String {
    let mut binary = vec![0x01, 0x55, 0x12, 0x20];
    binary.extend_from_slice(&[0; 24]);
    binary.extend_from_slice(&n.to_be_bytes());
    cid_string(&binary)
}

/// The CIDv1 string (multibase `b`: base32, lower case, no padding) of a binary CID.
pub(crate) fn cid_string(binary: &[u8]) -> String {
    let bits: Vec<bool> = binary
        .iter()
        .flat_map(|byte| (0..8).rev().map(move |bit| byte >> bit & 1 == 1))
        .collect();
    let symbols = bits.chunks(5).map(|chunk| {
        let value = (0..5).fold(0, |acc, i| {
            acc << 1 | usize::from(chunk.get(i) == Some(&true))
        });
        b"abcdefghijklmnopqrstuvwxyz234567"[value] as char
    });
    core::iter::once('b').chain(symbols).collect()
}

/// A well-formed age recipient (made by `age-keygen`).
pub(crate) const RECIPIENT: &str = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p";
