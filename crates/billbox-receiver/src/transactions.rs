//! How the receiver files AG transactions (`ADD_REC`).
//!
//! Per (`USG_ID`, `PROPERTY_ID`), in `OUT/transactions/<USG_ID>/`:
//! - `<PROPERTY_ID>.txt`: one JSON object per transaction and line
//!   ([`FiledTransaction`], keys in its field order);
//! - `<PROPERTY_ID>.packets`: the packet of each transaction byte for byte,
//!   each as a line `<byte length>\n`, that many bytes, and `\n`
//!   ([`read_packets`]).
//!
//! Line *i* of the `.txt` and packet *i* of the `.packets` are the same
//! transaction. The packet is written (and synced) first, so a receiver
//! that stopped between the two writes finds a packet without its line:
//! [`repair`] writes the line back from the packet, and cuts a torn last
//! line or packet (never acknowledged) away.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use billbox_wire::{decode_transaction, Transaction};
use chrono::{Datelike, Timelike};
use serde::{Deserialize, Serialize};

use crate::ledger::Ledger;
use crate::server::safe;

/// The directory of `OUT` that holds the transactions.
pub const TRANSACTIONS_DIR: &str = "transactions";

/// The two files of one (`USG_ID`, `PROPERTY_ID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionFiles {
    /// `OUT/transactions/<USG_ID>/<PROPERTY_ID>.txt`: one JSON line per transaction.
    pub txt: PathBuf,
    /// `OUT/transactions/<USG_ID>/<PROPERTY_ID>.packets`: the raw packets.
    pub packets: PathBuf,
}

/// Where the receiver files the transactions of `usg_id`/`property_id`
/// under `out` (both names made safe for a file system: characters other
/// than ASCII letters, digits, `-`, `_` and `.` become `_`, leading dots
/// are dropped, an empty name becomes `_`).
pub fn transaction_files(out: &Path, usg_id: &str, property_id: &str) -> TransactionFiles {
    files_in(
        &out.join(TRANSACTIONS_DIR).join(safe(usg_id)),
        &safe(property_id),
    )
}

fn files_in(dir: &Path, stem: &str) -> TransactionFiles {
    TransactionFiles {
        txt: dir.join(format!("{stem}.txt")),
        packets: dir.join(format!("{stem}.packets")),
    }
}

/// One line of a `.txt` file. Serialized as a JSON object with exactly
/// these keys, in this order (`trans_type` is written `type`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiledTransaction {
    /// `REC_NUM`, as a number (`923`).
    pub rec_num: u64,
    pub usg_id: String,
    pub property_id: String,
    /// `DATE`, `mm/dd/yyyy`.
    pub date: String,
    /// `TIME`, `HH:MM:SS`.
    pub time: String,
    /// `ROOM_NUM`.
    pub room: String,
    /// `AMOUNT`, exactly as in the packet (`234.34`, `18.5`).
    pub amount: String,
    /// `TRANS_TYPE`: `CC` or `PMS`.
    #[serde(rename = "type")]
    pub trans_type: String,
    /// Whether the packet carried a `SIGNATURE`.
    pub signed: bool,
}

impl From<&Transaction> for FiledTransaction {
    fn from(tx: &Transaction) -> FiledTransaction {
        let (d, t) = (tx.date, tx.time);
        FiledTransaction {
            rec_num: u64::from(tx.rec_num),
            usg_id: tx.usg_id.clone(),
            property_id: tx.property_id.clone(),
            date: format!("{:02}/{:02}/{:04}", d.month(), d.day(), d.year()),
            time: format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second()),
            room: tx.room_num.clone(),
            amount: tx.amount.as_str().to_string(),
            trans_type: tx.trans_type.as_str().to_string(),
            signed: tx.signature.is_some(),
        }
    }
}

/// The `.txt` line of `tx`, LF included.
pub(crate) fn line(tx: &Transaction) -> io::Result<Vec<u8>> {
    let mut out = serde_json::to_vec(&FiledTransaction::from(tx)).map_err(io::Error::other)?;
    out.push(b'\n');
    Ok(out)
}

/// The `.packets` frame of `packet`.
pub(crate) fn frame(packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(packet.len() + 22);
    out.extend_from_slice(packet.len().to_string().as_bytes());
    out.push(b'\n');
    out.extend_from_slice(packet);
    out.push(b'\n');
    out
}

/// Reads a `.packets` file back: the packets, in the order they were
/// filed, byte for byte. An error (`InvalidData`) when the file is not a
/// whole number of `<byte length>\n<bytes>\n` frames.
pub fn read_packets(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let scan = scan_frames(path)?;
    if !scan.whole() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: not a length-prefixed packet at byte {} of {}",
                path.display(),
                scan.end(),
                scan.len
            ),
        ));
    }
    let mut file = File::open(path)?;
    scan.frames
        .iter()
        .map(|&(start, size)| read_at(&mut file, start, size))
        .collect()
}

/// Reads the `.txt` file of transactions back, one per line. An error
/// (`InvalidData`) on a line that is not a [`FiledTransaction`].
pub fn read_transactions(path: &Path) -> io::Result<Vec<FiledTransaction>> {
    BufReader::new(File::open(path)?)
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(&line?).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} line {}: {e}", path.display(), i + 1),
                )
            })
        })
        .collect()
}

/// The frames of a `.packets` file: (offset of the packet, its length),
/// up to the first byte that does not start a whole frame.
#[derive(Debug, Default)]
struct Scan {
    frames: Vec<(u64, u64)>,
    len: u64,
}

impl Scan {
    /// Where the last whole frame ends.
    fn end(&self) -> u64 {
        self.frames
            .last()
            .map_or(0, |&(start, size)| start + size + 1)
    }

    fn whole(&self) -> bool {
        self.end() == self.len
    }
}

/// The longest length line: 20 digits (u64) and LF.
const MAX_LENGTH_LINE: u64 = 21;

fn scan_frames(path: &Path) -> io::Result<Scan> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut scan = Scan {
        frames: Vec::new(),
        len,
    };
    let mut r = BufReader::new(file);
    let mut pos = 0u64;
    let mut head = Vec::new();
    while pos < len {
        head.clear();
        let n = (&mut r)
            .take(MAX_LENGTH_LINE)
            .read_until(b'\n', &mut head)? as u64;
        let Some(size) = parse_length(&head) else {
            break;
        };
        let start = pos + n;
        let Some(end) = start
            .checked_add(size)
            .and_then(|e| e.checked_add(1))
            .filter(|&e| e <= len)
        else {
            break;
        };
        let Ok(skip) = i64::try_from(size) else {
            break;
        };
        r.seek_relative(skip)?;
        let mut sep = [0u8];
        r.read_exact(&mut sep)?;
        if sep != *b"\n" {
            break;
        }
        scan.frames.push((start, size));
        pos = end;
    }
    Ok(scan)
}

fn parse_length(head: &[u8]) -> Option<u64> {
    let digits = head.strip_suffix(b"\n")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn read_at(file: &mut File, start: u64, size: u64) -> io::Result<Vec<u8>> {
    let size = usize::try_from(size).map_err(io::Error::other)?;
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = vec![0; size];
    file.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// What identifies a filed transaction (the rest of the line is not read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub(crate) struct Key {
    pub rec_num: u64,
    pub usg_id: String,
    pub property_id: String,
}

impl From<&Transaction> for Key {
    fn from(tx: &Transaction) -> Key {
        Key {
            rec_num: u64::from(tx.rec_num),
            usg_id: tx.usg_id.clone(),
            property_id: tx.property_id.clone(),
        }
    }
}

/// What [`repair`] found.
#[derive(Debug, Default)]
pub(crate) struct Repaired {
    /// Every transaction the files hold (`completed` included).
    pub keys: Vec<Key>,
    /// The transactions whose line was written back from their packet.
    pub completed: Vec<Key>,
}

/// Makes the two files of one (`USG_ID`, `PROPERTY_ID`) whole again after
/// the receiver stopped (or a write failed) in the middle of filing:
/// a torn last line of the `.txt` is cut (it was never acknowledged), a
/// packet without its line gets its line back (the packet is decoded
/// again), and a torn last packet is cut. Returns what the files hold.
pub(crate) fn repair(files: &TransactionFiles, durable: bool) -> io::Result<Repaired> {
    let mut repaired = Repaired::default();
    let mut lines = 0usize;
    match File::open(&files.txt) {
        Ok(f) => {
            let len = f.metadata()?.len();
            let mut r = BufReader::new(f);
            let mut whole = 0u64;
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = r.read_until(b'\n', &mut buf)?;
                if n == 0 || buf.last() != Some(&b'\n') {
                    break;
                }
                whole += n as u64;
                lines += 1;
                match serde_json::from_slice::<Key>(&buf) {
                    Ok(key) => repaired.keys.push(key),
                    Err(e) => tracing::warn!(
                        file = %files.txt.display(),
                        line = lines,
                        error = %e,
                        "A filed transaction line cannot be read; its REC_NUM is not known as held."
                    ),
                }
            }
            if whole < len {
                tracing::warn!(
                    file = %files.txt.display(),
                    bytes = len - whole,
                    "The last transaction line was cut short (never acknowledged); removing it."
                );
                truncate(&files.txt, whole, durable)?;
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }

    let scan = match scan_frames(&files.packets) {
        Ok(scan) => scan,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Scan::default(),
        Err(e) => return Err(e),
    };
    let paired = lines.min(scan.frames.len());
    if scan.frames.len() < lines {
        tracing::warn!(
            file = %files.packets.display(),
            packets = scan.frames.len(),
            lines,
            "Fewer raw packets than transaction lines; the packets of the last lines are missing."
        );
    }
    let mut keep = scan.frames[..paired]
        .last()
        .map_or(0, |&(start, size)| start + size + 1);
    let mut missing_lines = Vec::new();
    if paired < scan.frames.len() {
        let mut file = File::open(&files.packets)?;
        for &(start, size) in &scan.frames[paired..] {
            let packet = read_at(&mut file, start, size)?;
            match decode_transaction(&packet) {
                Ok(tx) => {
                    missing_lines.extend_from_slice(&line(&tx)?);
                    let key = Key::from(&tx);
                    repaired.keys.push(key.clone());
                    repaired.completed.push(key);
                    keep = start + size + 1;
                }
                Err(e) => {
                    tracing::warn!(
                        file = %files.packets.display(),
                        offset = start,
                        error = %e.without_contents(),
                        "A filed packet is not a transaction; removing it and what follows."
                    );
                    break;
                }
            }
        }
    }
    if !missing_lines.is_empty() {
        tracing::warn!(
            file = %files.txt.display(),
            transactions = repaired.completed.len(),
            "Transactions were filed without their line (the receiver stopped in between); writing the lines from their packets."
        );
        let mut txt = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&files.txt)?;
        txt.write_all(&missing_lines)?;
        if durable {
            txt.sync_data()?;
        }
    }
    if keep < scan.len {
        tracing::warn!(
            file = %files.packets.display(),
            bytes = scan.len - keep,
            "The end of the raw packets is not a whole transaction packet (never acknowledged); removing it."
        );
        truncate(&files.packets, keep, durable)?;
    }
    Ok(repaired)
}

fn truncate(path: &Path, len: u64, durable: bool) -> io::Result<()> {
    let f = OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    if durable {
        f.sync_all()?;
    }
    Ok(())
}

/// Rebuilds the transaction ledger from `OUT/transactions/*/*.txt` (and
/// repairs the files, see [`repair`]).
pub(crate) fn load(out: &Path, durable: bool) -> io::Result<Ledger> {
    let mut ledger = Ledger::default();
    let root = out.join(TRANSACTIONS_DIR);
    let dirs = match std::fs::read_dir(&root) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(ledger),
        Err(e) => return Err(e),
    };
    for dir in dirs {
        let dir = dir?;
        if !dir.file_type()?.is_dir() {
            // A gateway named `transactions` keeps its record files here.
            continue;
        }
        let mut stems = std::collections::BTreeSet::new();
        for f in std::fs::read_dir(dir.path())? {
            let f = f?;
            if !f.file_type()?.is_file() {
                continue;
            }
            let name = f.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name
                .strip_suffix(".txt")
                .or_else(|| name.strip_suffix(".packets"))
            {
                stems.insert(stem.to_string());
            }
        }
        for stem in stems {
            let repaired = repair(&files_in(&dir.path(), &stem), durable)?;
            for k in repaired.keys {
                ledger.accept(&k.usg_id, &k.property_id, k.rec_num);
            }
        }
    }
    Ok(ledger)
}

/// The open files of one (`USG_ID`, `PROPERTY_ID`) and their lengths.
pub(crate) struct Appender {
    txt: File,
    txt_len: u64,
    packets: File,
    packets_len: u64,
}

/// Opens (creating them if need be) the files of `files` for appending.
/// With `durable`, a directory or file created is made durable too.
pub(crate) fn open(out: &Path, files: &TransactionFiles, durable: bool) -> io::Result<Appender> {
    let root = out.join(TRANSACTIONS_DIR);
    let dir = files.txt.parent().unwrap_or(&root);
    let (root_new, dir_new) = (!root.is_dir(), !dir.is_dir());
    std::fs::create_dir_all(dir)?;
    let (txt_new, packets_new) = (!files.txt.exists(), !files.packets.exists());
    let append = |p: &Path| OpenOptions::new().create(true).append(true).open(p);
    let txt = append(&files.txt)?;
    let packets = append(&files.packets)?;
    if durable {
        if root_new {
            sync_dir(out)?;
        }
        if dir_new {
            sync_dir(&root)?;
        }
        if txt_new || packets_new {
            sync_dir(dir)?;
        }
    }
    Ok(Appender {
        txt_len: txt.metadata()?.len(),
        txt,
        packets_len: packets.metadata()?.len(),
        packets,
    })
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl Appender {
    /// Appends one transaction: its packet `frame` (synced with `durable`),
    /// then its `line` (synced with `durable`), one write each. On an error
    /// both files are cut back to where they were (as far as possible);
    /// the caller should [`repair`] them before appending again.
    pub(crate) fn append(&mut self, frame: &[u8], line: &[u8], durable: bool) -> io::Result<()> {
        let result = (|| {
            self.packets.write_all(frame)?;
            if durable {
                self.packets.sync_data()?;
            }
            self.txt.write_all(line)?;
            if durable {
                self.txt.sync_data()?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                self.packets_len += frame.len() as u64;
                self.txt_len += line.len() as u64;
                Ok(())
            }
            Err(e) => {
                for (f, len) in [(&self.txt, self.txt_len), (&self.packets, self.packets_len)] {
                    let _ = f.set_len(len).and_then(|()| f.sync_data());
                }
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_read_back_byte_exact_and_torn_ends_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.packets");
        let packets: [&[u8]; 4] = [b"<USG>\n</USG>", b"", b"\n\n", b"12\n"];
        let bytes: Vec<u8> = packets.iter().flat_map(|p| frame(p)).collect();
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_packets(&path).unwrap(), packets.map(<[u8]>::to_vec));
        for torn in [
            &b"5\nabc"[..],
            b"5\nabcde",
            b"5\nabcdeX",
            b"x\n",
            b"99",
            b"\n",
        ] {
            let mut b = bytes.clone();
            b.extend_from_slice(torn);
            std::fs::write(&path, &b).unwrap();
            let e = read_packets(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{torn:?}");
            let scan = scan_frames(&path).unwrap();
            assert_eq!((scan.frames.len(), scan.end()), (4, bytes.len() as u64));
        }
    }

    #[test]
    fn safe_names_are_never_empty() {
        let out = Path::new("/out");
        let f = transaction_files(out, "..", "a/b c");
        assert_eq!(f.txt, Path::new("/out/transactions/_/a_b_c.txt"));
        assert_eq!(f.packets, Path::new("/out/transactions/_/a_b_c.packets"));
        let f = transaction_files(out, "00020b", "Hotel.1");
        assert_eq!(f.txt, Path::new("/out/transactions/00020b/Hotel.1.txt"));
    }
}
