//! `cargo fuzz run config`: see kvmnet_fuzz::check_config for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kvmnet_fuzz::check_config(data));
