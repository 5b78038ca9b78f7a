//! QEMU's `helper=`: `kvmnet-bridge-helper [--use-vnet] --br=BR --fd=N`. See README.md.
#![no_main]

kvmnet::c_main!(kvmnet::bridge_helper::main());
