//! How long a test waits for its database: `TestDb::new("notes")` (a copy of the migrated and seeded
//! template, labelled, owned by the service's role), median of 21 after a warm-up. The copies are
//! dropped after timing, not in between: on this machine's journal-less ext4 a drop slows file
//! creation for a while (see design.md's field notes), which real disks do not do.
//!
//! Run: `cargo xtask setup && cargo bench -p testdb --bench fresh`

use std::time::Instant;

fn main() {
    drop(testdb::TestDb::new("notes"));
    let mut kept = Vec::new();
    let mut millis: Vec<f64> = (0..21)
        .map(|_| {
            let start = Instant::now();
            kept.push(testdb::TestDb::new("notes"));
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    drop(kept);
    millis.sort_by(f64::total_cmp);
    println!(
        "TestDb::new(\"notes\"): median {:.1} ms (min {:.1}, max {:.1}, n = {})",
        millis[millis.len() / 2],
        millis[0],
        millis[millis.len() - 1],
        millis.len()
    );
}
