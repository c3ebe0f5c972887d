//! `sqlx::migrate!` embeds migrations/notes at compile time; rebuild when a file there is added or changed.

fn main() {
    println!("cargo:rerun-if-changed=../../migrations/notes");
}
