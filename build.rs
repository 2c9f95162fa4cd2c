//! Rebuilds when a migration is added or changed: `sqlx::migrate!` embeds
//! the files under `migrations/`, and Cargo does not notice a new file there
//! on its own (an incremental build would carry the old set).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
