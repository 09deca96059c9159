//! Builds `lib.rs` as the registry's second version: with `cfg(registry_v2)`, whatever
//! features cargo-contract passes.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(registry_v2)");
    println!("cargo::rustc-cfg=registry_v2");
}
