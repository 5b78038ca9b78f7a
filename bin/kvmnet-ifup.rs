//! QEMU's `script=`: `kvmnet-ifup TAP`. See README.md.
#![no_main]

kvmnet::c_main!(kvmnet::main("kvmnet-ifup", kvmnet::run_ifup));
