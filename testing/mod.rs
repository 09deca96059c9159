//! The tests that prove the contract, besides the e2e scenarios of `e2e_tests.rs`:
//! - `unit`: `#[ink::test]` unit tests of every message, on ink!'s off-chain engine;
//! - `props`: model-based property tests, random message sequences against a reference model;
//! - `bench` (run from `e2e_tests.rs`, as it needs a chain): gas, deposits and code size;
//! - `support`: the fixtures they share.

pub(crate) mod support;

mod props;
mod unit;
