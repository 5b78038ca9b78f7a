//! QEMU's `helper=`: `kvmnet-bridge-helper [--use-vnet] --br=BR --fd=N`. See README.md.

fn main() -> std::process::ExitCode {
    kvmnet::bridge_helper::main()
}
