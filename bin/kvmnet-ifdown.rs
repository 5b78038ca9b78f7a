//! QEMU's `downscript=`: `kvmnet-ifdown TAP`. See README.md.
#![no_main]

kvmnet::c_main!(kvmnet::main("kvmnet-ifdown", kvmnet::run_ifdown));
