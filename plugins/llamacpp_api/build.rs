// Empty: exists so that the [build-dependencies] pin in Cargo.toml applies
// (see the comment there).
fn main() {}
