//! `cargo fuzz run record`: see kvmnet_fuzz::check_record for the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| kvmnet_fuzz::check_record(data));
