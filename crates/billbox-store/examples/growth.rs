//! How the store's file grows when every record is removed soon after it
//! is written (a gateway whose servers keep up): appends batches of
//! records, flushes, removes everything flushed, and prints the held
//! records and sled's size on disk every `GROWTH_EVERY` records.
//!
//! ```sh
//! GROWTH_RECORDS=1000000 cargo run --release -p billbox-store --example growth
//! ```
//!
//! `GROWTH_RECORDS` (default 500,000), `GROWTH_BATCH` (records per flush,
//! default 100), `GROWTH_EVERY` (default 100,000). Records are 140 bytes
//! that do not compress, as in tests/fulldisk.rs.

use std::sync::Arc;

use billbox_record::RecordFlags;
use billbox_store::{NewRecord, Store};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn line(i: u64) -> Vec<u8> {
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let noise: String = (0..100)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    format!("{i:08},2026/11/24 13:00:00,00:01:05,4321,{noise}\n").into_bytes()
}

fn main() {
    let (total, batch, every) = (
        env("GROWTH_RECORDS", 500_000),
        env("GROWTH_BATCH", 100).max(1),
        env("GROWTH_EVERY", 100_000).max(1),
    );
    let dir = tempfile::tempdir().expect("a temp dir");
    let store = Store::open(&dir.path().join("store"), 8 << 20).expect("the store opens");
    let port: Arc<str> = Arc::from("p");
    let file = dir.path().join("store").join("db");
    println!("| records written | held | bytes written | sled size_on_disk | db file |");
    println!("|---|---|---|---|---|");
    let mut written = 0u64;
    let mut bytes = 0u64;
    while written < total {
        let n = batch.min(total - written);
        let news: Vec<NewRecord> = (written + 1..=written + n)
            .map(|i| NewRecord {
                received_us: 1_790_000_000_000_000 + i as i64,
                flags: RecordFlags::NONE,
                bytes: line(i),
            })
            .collect();
        bytes += news.iter().map(|r| r.bytes.len() as u64).sum::<u64>();
        let a = store.append(&[(port.clone(), &news[..])]).expect("append");
        store.flush_blocking().expect("flush");
        store.mark_durable("p", a[0].last());
        store.remove_through("p", a[0].last()).expect("remove");
        written += n;
        if written % every == 0 || written == total {
            store.flush_blocking().expect("flush");
            let held = store
                .first_held("p")
                .map_or(0, |f| (written + 1).saturating_sub(f));
            let size = store.size_on_disk().unwrap_or(0);
            let db = std::fs::metadata(&file).map_or(0, |m| m.len());
            println!("| {written} | {held} | {bytes} | {size} | {db} |");
        }
    }
}
