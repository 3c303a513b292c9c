//! Criterion benchmarks of the hot functions: framing, XML encoding, ack
//! parsing, the store's append + flush (group commit), and the status
//! board and page (what a commit batch adds, what a page costs).
//!
//! `cargo bench --bench hot`; one group: `cargo bench --bench hot -- framing` (or `-- status`).

use std::sync::Arc;

use billbox_record::{Framer, Record, RecordFlags};
use billbox_store::{NewRecord, Store};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// 1,000 SMDR-like records of 145 bytes, CR LF terminated.
fn stream() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..1000u32 {
        let mut rec = format!("{i:010},2026/11/24 13:00:00,00:01:05,4321,").into_bytes();
        rec.resize(143, b'x');
        rec.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rec);
    }
    out
}

fn framing(c: &mut Criterion) {
    let data = stream();
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Elements(1000));
    g.bench_function("1000 records in 4 KiB reads", |b| {
        let mut out = Vec::with_capacity(1000);
        b.iter(|| {
            let mut f = Framer::try_new(b"\r\n", 4096).unwrap();
            out.clear();
            for chunk in data.chunks(4096) {
                f.push(chunk, &mut out);
            }
            out.len()
        })
    });
    g.finish();
}

fn record(seq: u64) -> Record {
    let mut bytes = format!("{seq:010},2026/11/24 13:00:00,00:01:05,4321,").into_bytes();
    bytes.resize(143, b'x');
    bytes.extend_from_slice(b"\r\n");
    Record {
        port: Arc::from("pbx1"),
        seq,
        epoch: billbox_record::Epoch::from_u64(0x3f9a_0c1d_2e4b_5a67),
        received_us: 1_795_525_200_123_456,
        flags: RecordFlags::NONE,
        bytes,
    }
}

fn xml(c: &mut Criterion) {
    let one = record(42);
    let batch: Vec<Record> = (1..=100).map(record).collect();
    let mut g = c.benchmark_group("xml");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode one record", |b| {
        let mut out = Vec::with_capacity(1024);
        b.iter(|| {
            out.clear();
            billbox_wire::encode_cdr("gw-lobby", &one, &mut out);
            out.len()
        })
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("encode a batch of 100", |b| {
        let mut out = Vec::with_capacity(64 * 1024);
        b.iter(|| {
            out.clear();
            billbox_wire::encode_cdr_batch("gw-lobby", &batch, &mut out);
            out.len()
        })
    });
    g.throughput(Throughput::Elements(1));
    let ack = br#"<USG COMMAND="RMTLOG_ACK"><ACK_VALUE>OK</ACK_VALUE><IP_ADDR>11.22.33.44</IP_ADDR><ERROR_CODE>1</ERROR_CODE></USG>"#;
    g.bench_function("parse an ack", |b| {
        b.iter(|| billbox_wire::delivery_verdict(200, ack).is_delivered())
    });
    g.finish();
}

fn store(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), 32 << 20).unwrap();
    let port: Arc<str> = Arc::from("pbx1");
    let mut g = c.benchmark_group("store");
    g.sample_size(20);
    for n in [1usize, 100, 1000] {
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("append {n} and flush (group commit)"), |b| {
            b.iter_batched(
                || {
                    (0..n)
                        .map(|i| NewRecord {
                            received_us: 0,
                            flags: RecordFlags::NONE,
                            bytes: record(i as u64).bytes,
                        })
                        .collect::<Vec<_>>()
                },
                |recs| {
                    store.append(&[(port.clone(), &recs[..])]).unwrap();
                    store.flush_blocking().unwrap();
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// A config of 64 TCP ports, delivery and a carbon copy.
fn status_config() -> billbox_config::Config {
    let mut toml =
        String::from("[gateway]\nname = \"gw\"\ndata_dir = \"/tmp/d\"\nspool_dir = \"/tmp/s\"\n");
    for i in 0..64 {
        toml.push_str(&format!(
            "[[ports]]\nname = \"pbx{i}\"\nlisten = \"127.0.0.1:{}\"\nquiet_alarm = \"1h\"\n",
            20000 + i
        ));
    }
    toml.push_str(
        "[delivery]\nprimary = \"http://127.0.0.1:1/b\"\nsecondary = \"http://127.0.0.1:2/b\"\n",
    );
    toml.push_str("[[carbon_copy]]\nname = \"audit\"\nurl = \"http://127.0.0.1:3/cc\"\n");
    billbox_config::from_toml_str(&toml).expect("a valid config")
}

fn status(c: &mut Criterion) {
    let config = status_config();
    let board = billbox_status::board();
    let mut figures = billbox_monitor::sample::Figures::default();
    for p in &config.ports {
        let e = board.port(&p.name);
        e.link(billbox_status::Link::Up {
            peer: "10.0.0.9:40000".into(),
        });
        e.received(10);
        e.file_closed(billbox_status::FileFacts {
            name: format!("cyc{}-261202.101500.txt", p.name),
            records: 50,
            at: chrono::Utc::now(),
        });
        figures.committed.insert(p.name.clone(), 123_456);
        figures
            .backlog
            .insert(("delivery".into(), p.name.clone()), 12);
    }
    let mut g = c.benchmark_group("status");
    let entry = board.port("pbx0");
    g.bench_function("board: note a commit batch", |b| {
        b.iter(|| entry.received(1))
    });
    g.bench_function("board: note a commit batch, looked up by name", |b| {
        b.iter(|| board.port("pbx63").received(1))
    });
    let inputs = || billbox_monitor::status::Inputs {
        config: &config,
        board,
        figures: Some(&figures),
        alarms: &[],
        ready: true,
        started: chrono::Utc::now(),
        disk_free: Some(1 << 30),
        now: chrono::Local::now(),
    };
    g.bench_function("page of 64 ports: snapshot + HTML", |b| {
        b.iter(|| {
            billbox_monitor::page::render(&billbox_monitor::status::snapshot(&inputs())).len()
        })
    });
    g.bench_function("page of 64 ports: snapshot + JSON", |b| {
        b.iter(|| {
            serde_json::to_vec(&billbox_monitor::status::snapshot(&inputs()))
                .unwrap()
                .len()
        })
    });
    g.finish();
}

criterion_group!(benches, framing, xml, store, status);
criterion_main!(benches);
