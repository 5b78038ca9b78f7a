//! `cargo fuzz run name`: see kvmnet_fuzz::check_name for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kvmnet_fuzz::check_name(data));
