//! Billing records as PBXes in the field print them.
//!
//! Every generator takes a call number `n` and a time; `n` appears in the
//! record (as the call id, account or dialled digits) so each record is unique.

use chrono::{DateTime, Duration, Utc};

/// The record formats the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Avaya IP Office SMDR: CSV, CR LF, usually over TCP.
    AvayaIpOffice,
    /// Panasonic KX-TDA/NS: 80-column fixed width, CR LF, serial.
    Panasonic,
    /// NEC SL1100: fixed width, CR LF, 7-bit ASCII.
    Nec,
    /// Mitel MiVoice: 90-column fixed width, CR LF, TCP.
    Mitel,
    /// Oracle FIAS posting: STX ... ETX, fields split by `|`.
    Fias,
}

impl Format {
    /// The end-of-record string of the format.
    pub fn terminator(self) -> &'static [u8] {
        match self {
            Format::Fias => b"\x03",
            _ => b"\r\n",
        }
    }

    /// Record number `n`, for a call that started at `at`.
    pub fn record(self, n: u64, at: DateTime<Utc>) -> Vec<u8> {
        match self {
            Format::AvayaIpOffice => avaya_ip_office(n, at),
            Format::Panasonic => panasonic(n, at),
            Format::Nec => nec(n, at),
            Format::Mitel => mitel(n, at),
            Format::Fias => fias(n, at),
        }
    }
}

fn duration_of(n: u64) -> Duration {
    Duration::seconds(((n * 37) % 3600) as i64)
}

/// `2008/06/28 09:28:41,00:00:00,9,8004206,I,4324,4324,,0,1000014155,0,E4324,Joe Bloggs,T9161,LINE 5.1,0,0`
pub fn avaya_ip_office(n: u64, at: DateTime<Utc>) -> Vec<u8> {
    let d = duration_of(n);
    let ext = 4300 + n % 90;
    format!(
        "{},{:02}:{:02}:{:02},{},{},O,{},{},,0,{},0,E{},Ext {},T9161,LINE 5.1,0,0\r\n",
        at.format("%Y/%m/%d %H:%M:%S"),
        d.num_hours(),
        d.num_minutes() % 60,
        d.num_seconds() % 60,
        n % 30,
        8_004_206_000 + n,
        ext,
        ext,
        1_000_014_155 + n,
        ext,
        ext
    )
    .into_bytes()
}

/// `Date     Time    Ext CO Dial Number      Ring Duration  Cost    Acc code CD`
pub fn panasonic(n: u64, at: DateTime<Utc>) -> Vec<u8> {
    let d = duration_of(n);
    let line = format!(
        "{} {} {:>3} {:02} {:<24} 0'05 {:02}:{:02}'{:02} {:>7} {:>10} ",
        at.format("%m/%d/%y %I:%M%p"),
        "",
        101 + n % 40,
        1 + n % 8,
        format!("9{:011}", n),
        d.num_hours(),
        d.num_minutes() % 60,
        d.num_seconds() % 60,
        format!("{}.{:02}", n % 9, n % 100),
        n % 100_000,
    );
    let mut out: Vec<u8> = format!("{line:<80}").into_bytes();
    out.truncate(80);
    out.extend_from_slice(b"\r\n");
    out
}

/// NEC SL1100: call type 1-4, time 6-10, line 12-21, duration 23-30, station 32-41, digits 43-62.
pub fn nec(n: u64, at: DateTime<Utc>) -> Vec<u8> {
    let d = duration_of(n);
    format!(
        "{:<4} {} {:<10} {:02}:{:02}:{:02} {:<10} {:<20}\r\n",
        if n % 3 == 0 { "IN" } else { "OUT" },
        at.format("%H:%M"),
        format!("LINE{:03}", n % 200),
        d.num_hours(),
        d.num_minutes() % 60,
        d.num_seconds() % 60,
        format!("STN{}", 200 + n % 50),
        format!("{:020}", 9_000_000_000u64 + n),
    )
    .into_bytes()
}

/// Mitel: long-call flag, mm/dd, start time, duration, calling party, digits, status.
pub fn mitel(n: u64, at: DateTime<Utc>) -> Vec<u8> {
    let d = duration_of(n);
    let line = format!(
        " {}{} {:02}:{:02}:{:02} {:<5} {:<26} A {:>10}",
        at.format("%m/%d %H:%M"),
        if d.num_minutes() > 30 { "%" } else { " " },
        d.num_hours(),
        d.num_minutes() % 60,
        d.num_seconds() % 60,
        2000 + n % 300,
        format!("9{:015}", n),
        n
    );
    format!("{line:<90}\r\n").into_bytes()
}

/// `STX PS|RN2781|TA1050|DA000915|TI123545|P#1729|DD004989920920|PCI|CTInternational|PTC| ETX`
pub fn fias(n: u64, at: DateTime<Utc>) -> Vec<u8> {
    format!(
        "\x02PS|RN{}|TA{}|DA{}|TI{}|P#{}|DD00{:010}|PCI|CTInternational|PTC|\x03",
        100 + n % 900,
        (n * 13) % 100_000,
        at.format("%y%m%d"),
        at.format("%H%M%S"),
        n,
        4_989_920_920u64 + n
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_end_with_their_terminator_once_and_are_unique() {
        let at = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        for f in [
            Format::AvayaIpOffice,
            Format::Panasonic,
            Format::Nec,
            Format::Mitel,
            Format::Fias,
        ] {
            let a = f.record(1, at);
            let b = f.record(2, at);
            assert_ne!(a, b, "{f:?}");
            let eor = f.terminator();
            assert!(a.ends_with(eor), "{f:?}");
            let count = a.windows(eor.len()).filter(|w| *w == eor).count();
            assert_eq!(count, 1, "{f:?}");
        }
        assert_eq!(panasonic(7, at).len(), 82);
        assert_eq!(mitel(7, at).len(), 92);
    }
}
