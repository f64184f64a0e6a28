//! `azmon-emulator`: placeholder until the binary lands.
fn main() {}
