//! ACS file names.
//!
//! `cyc` + prefix (the port's alias, else the gateway name) + `-YYMMDD.hhmmss`
//! (local time of the file's first record) + `.tmp` while written, `.txt` once
//! closed. When a file of the same prefix already has that name (two files
//! opened within one second), billbox appends `_001`, `_002`, ... to the time
//! so no file is ever overwritten; names still sort in arrival order.

use std::path::Path;

use chrono::{Local, TimeZone};

/// The extension of a file being written.
pub const TMP: &str = "tmp";
/// The extension of a closed file.
pub const TXT: &str = "txt";

/// The name stem (no extension) for a file whose first record arrived at
/// `received_us` (microseconds since the Unix epoch).
pub fn stem(prefix: &str, received_us: i64) -> String {
    let secs = received_us.div_euclid(1_000_000);
    let when = Local
        .timestamp_opt(secs, 0)
        .single()
        .unwrap_or_else(|| Local.timestamp_opt(0, 0).unwrap());
    format!("cyc{prefix}-{}", when.format("%y%m%d.%H%M%S"))
}

/// A stem for a new file in `dir` that collides with no `.tmp` or `.txt`
/// there and sorts after `after` (the last name this port used), so a
/// name is not used again even when its file was collected and deleted
/// (a collector that keeps files by name would overwrite its copy). When
/// the clock went back (a DST change, an NTP step) the time's name sorts
/// before the last one: the new name then follows the last one
/// (`..._002` after `..._001`, `..._999_001` after `..._999`).
pub fn unique_stem(dir: &Path, prefix: &str, received_us: i64, after: Option<&str>) -> String {
    let base = stem(prefix, received_us);
    let free = |s: &str| {
        !dir.join(format!("{s}.{TMP}")).exists() && !dir.join(format!("{s}.{TXT}")).exists()
    };
    let candidates: Box<dyn Iterator<Item = String>> = match after {
        Some(last) if base.as_str() <= last => Box::new(names_after(last)),
        _ => {
            let tail = names_after(&format!("{base}_999"));
            let suffixed = base.clone();
            Box::new(
                std::iter::once(base.clone())
                    .chain((1..=999).map(move |n| format!("{suffixed}_{n:03}")))
                    .chain(tail),
            )
        }
    };
    let mut last_tried = String::new();
    for s in candidates {
        if free(&s) {
            return s;
        }
        last_tried = s;
    }
    // Some 2,000 names of one second are taken: a unique one all the same.
    format!("{last_tried}_{}", received_us.rem_euclid(1_000_000))
}

/// Names that sort after `last`, in order: its next suffixes, then
/// suffixes of `last` itself (at most 1,998).
fn names_after(last: &str) -> impl Iterator<Item = String> {
    let (root, n) = match last.rsplit_once('_') {
        Some((root, n)) if n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()) => {
            (root.to_string(), n.parse::<u32>().unwrap_or(999))
        }
        _ => (last.to_string(), 0),
    };
    let last = last.to_string();
    (n + 1..=999)
        .map(move |k| format!("{root}_{k:03}"))
        .chain((1..=999).map(move |k| format!("{last}_{k:03}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stem_follows_the_acs_pattern() {
        let us = Local
            .with_ymd_and_hms(2026, 3, 9, 7, 5, 1)
            .unwrap()
            .timestamp()
            * 1_000_000
            + 999_999;
        assert_eq!(stem("PABX-trunk9", us), "cycPABX-trunk9-260309.070501");
    }

    #[test]
    fn unique_stem_never_reuses_a_name() {
        let dir = tempfile::tempdir().unwrap();
        let base = stem("gw", 0);
        assert_eq!(unique_stem(dir.path(), "gw", 0, None), base);
        std::fs::write(dir.path().join(format!("{base}.txt")), b"x").unwrap();
        assert_eq!(
            unique_stem(dir.path(), "gw", 0, None),
            format!("{base}_001")
        );
        std::fs::write(dir.path().join(format!("{base}_001.tmp")), b"x").unwrap();
        assert_eq!(
            unique_stem(dir.path(), "gw", 0, None),
            format!("{base}_002")
        );
    }

    #[test]
    fn a_name_whose_file_was_deleted_is_not_used_again() {
        let dir = tempfile::tempdir().unwrap();
        let base = stem("gw", 0);
        let last = format!("{base}_002");
        // The directory is empty (collected), the port used _002 last.
        assert_eq!(
            unique_stem(dir.path(), "gw", 0, Some(&last)),
            format!("{base}_003")
        );
        // The clock went back: the new name follows the last one.
        let earlier = unique_stem(dir.path(), "gw", -5_000_000, Some(&last));
        assert_eq!(earlier, format!("{base}_003"));
        assert!(earlier.as_str() > last.as_str());
        let full = format!("{base}_999");
        assert_eq!(
            unique_stem(dir.path(), "gw", 0, Some(&full)),
            format!("{base}_999_001")
        );
        assert!(format!("{base}_999_001") > full);
        // A later second sorts after every suffix of an earlier one.
        let later = stem("gw", 1_000_000);
        assert!(later > last);
        assert_eq!(unique_stem(dir.path(), "gw", 1_000_000, Some(&last)), later);
    }
}
