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
/// (a collector that keeps files by name would overwrite its copy).
pub fn unique_stem(dir: &Path, prefix: &str, received_us: i64, after: Option<&str>) -> String {
    let base = stem(prefix, received_us);
    let free = |s: &str| {
        after.is_none_or(|last| s > last)
            && !dir.join(format!("{s}.{TMP}")).exists()
            && !dir.join(format!("{s}.{TXT}")).exists()
    };
    if free(&base) {
        return base;
    }
    (1u32..)
        .map(|n| format!("{base}_{n:03}"))
        .find(|s| free(s))
        .expect("an unused file name exists")
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
        // A later second sorts after every suffix of an earlier one.
        let later = stem("gw", 1_000_000);
        assert!(later > last);
        assert_eq!(unique_stem(dir.path(), "gw", 1_000_000, Some(&last)), later);
    }
}
