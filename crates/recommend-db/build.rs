//! Rebuilds the crate when a script is added to `migrations/`, which it compiles in (editing a
//! script already rebuilds it).

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
