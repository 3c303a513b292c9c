//! The crash harness: the real binary fed at a steady rate over ptys and TCP,
//! a real receiver acknowledging, and SIGKILL at random moments (during
//! ingest, flushes, file rotation, POSTs and removal: with a steady feed and
//! random kill times every stage is hit). Then the feed stops, billbox drains,
//! and every flushed record must be in exactly one file and at the receiver,
//! with no sequence reused.
//!
//! CI runs `CRASH_CYCLES` (default 10) cycles; for a long run:
//! `CRASH_CYCLES=100 cargo test --release --test crash -- --nocapture`.
//! The power-cut suite (`tests/powercut.rs`) runs the same harness with the
//! store and the files on a file system that loses what was not synced.

use std::time::Duration;

use billbox_testkit::stream::{self, Rig, Rng};
use billbox_testkit::*;

#[test]
fn records_survive_repeated_sigkill_with_delivery() {
    let cycles = env_or("CRASH_CYCLES", 10);
    eprintln!("crash harness: {cycles} cycles");
    let mut rng = Rng::from_env("CRASH_SEED");
    let site = Site::new();
    let Rig {
        received,
        mut receiver,
        config,
        feed,
    } = Rig::start(&site);

    for cycle in 0..cycles {
        let bb = Billbox::start(&config);
        let live = rng.between(150, 900);
        std::thread::sleep(Duration::from_millis(live));
        bb.kill9();
        if cycle % 3 == 2 {
            // Sometimes stay down a while: the serial bytes pile up.
            std::thread::sleep(Duration::from_millis(rng.between(10, 300)));
        }
    }
    // The last run: feed a little more, stop the feed, let everything drain.
    let bb = Billbox::start(&config);
    std::thread::sleep(Duration::from_millis(500));
    let sent = feed.stop();
    stream::drain(bb, &site, &received, &sent);
    let report: Vec<String> = stream::check_delivered(&site, &received, &sent, cycles)
        .iter()
        .map(|o| {
            format!(
                "{}: {} sent, {} received, {} fragments",
                o.port, o.sent, o.last, o.fragments
            )
        })
        .collect();
    // The receiver's own count of duplicates it dropped: records whose ack
    // was in flight (acknowledged, but the cursor not yet durable) at a kill.
    let duplicates = stream::receiver_duplicates(&mut receiver);
    // At most one batch (batch_max 5) per destination was in flight at each
    // kill, plus acks whose cursor was not flushed yet: bounded per kill.
    assert!(
        duplicates <= cycles * 10,
        "{duplicates} duplicates in {cycles} kills"
    );
    eprintln!(
        "crash harness: {cycles} kills; {}; {duplicates} duplicates dropped by the receiver",
        report.join("; ")
    );
}
