//! Splitting a byte stream into records on a port's end-of-record string.
//!
//! The rules, which hold whatever way the stream is split into reads:
//! - a record ends right after the first occurrence of the end-of-record string
//!   (`billing_eor`) and keeps it, byte for byte;
//! - any bytes are allowed, NUL and invalid UTF-8 included;
//! - `max_record_bytes` counts the terminator: a record of exactly that many
//!   bytes ending in the terminator is whole. When that many bytes have arrived
//!   without a terminator ending within them, the first `max_record_bytes` are
//!   cut off as a record flagged truncated and framing goes on after them;
//! - [`Framer::finish`] hands out what is left when the stream ends (device
//!   gone, connection closed) as a record flagged unterminated.
//!
//! A reader reads straight into the framer's buffer ([`Framer::room`] then
//! [`Framer::filled`]), so a port holds one buffer, not a read buffer and a
//! framing buffer. The room offered per read follows the arrival rate: it
//! doubles from [`MIN_ROOM`] up to [`MAX_ROOM`] while reads fill it and halves
//! while they use under a quarter of it, and the buffer gives back its room
//! after a read that did not fill it (the link is drained for now). A quiet
//! serial port therefore holds a few KiB and a saturated TCP port reads
//! 64 KiB at a time.

use memchr::memmem;

use crate::record::RecordFlags;

/// One record cut out of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub bytes: Vec<u8>,
    pub flags: RecordFlags,
}

/// A framer could not be built from its settings.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramerError {
    #[error("the end-of-record string is empty")]
    EmptyTerminator,
    #[error("max_record_bytes ({max}) is shorter than the end-of-record string ({eor} bytes)")]
    MaxTooSmall { max: usize, eor: usize },
}

/// The smallest room [`Framer::room`] offers for one read.
pub const MIN_ROOM: usize = 4 * 1024;
/// The largest room [`Framer::room`] offers for one read.
pub const MAX_ROOM: usize = 64 * 1024;

/// Splits a stream of reads into [`Frame`]s.
#[derive(Debug)]
pub struct Framer {
    finder: memmem::Finder<'static>,
    eor_len: usize,
    max: usize,
    /// Received bytes; while a read is under way ([`Framer::room`] was called
    /// and [`Framer::filled`] not yet), followed by the room offered to it.
    buf: Vec<u8>,
    /// Where the offered room starts, while a read is under way.
    room_at: Option<usize>,
    /// The room the next read is offered.
    room: usize,
    /// Start of the unframed bytes in `buf`.
    start: usize,
    /// How many unframed bytes have been searched without finding a terminator.
    scanned: usize,
}

impl Framer {
    /// A framer for the terminator `eor` and records of at most `max_record_bytes`.
    pub fn try_new(eor: &[u8], max_record_bytes: usize) -> Result<Self, FramerError> {
        if eor.is_empty() {
            return Err(FramerError::EmptyTerminator);
        }
        if max_record_bytes < eor.len() {
            return Err(FramerError::MaxTooSmall {
                max: max_record_bytes,
                eor: eor.len(),
            });
        }
        Ok(Framer {
            finder: memmem::Finder::new(eor).into_owned(),
            eor_len: eor.len(),
            max: max_record_bytes,
            buf: Vec::new(),
            room_at: None,
            room: MIN_ROOM,
            start: 0,
            scanned: 0,
        })
    }

    /// Room for the next read, at the end of the framer's buffer. Hand what
    /// was read to [`Framer::filled`]; a read that never happens (cancelled)
    /// leaves nothing behind.
    pub fn room(&mut self) -> &mut [u8] {
        self.settle();
        let at = self.buf.len();
        self.buf.resize(at + self.room, 0);
        self.room_at = Some(at);
        &mut self.buf[at..]
    }

    /// The first `n` bytes of the room from [`Framer::room`] were read;
    /// complete records are appended to `out`.
    ///
    /// # Panics
    /// If `n` is more than the room offered, or no room was asked for.
    pub fn filled(&mut self, n: usize, out: &mut Vec<Frame>) {
        let at = self
            .room_at
            .take()
            .expect("Framer::room before Framer::filled");
        let offered = self.buf.len() - at;
        assert!(n <= offered, "read {n} bytes into a room of {offered}");
        self.buf.truncate(at + n);
        if n == offered {
            self.room = (self.room * 2).min(MAX_ROOM);
        } else if n < offered / 4 {
            self.room = (self.room / 2).max(MIN_ROOM);
        }
        self.frame(out);
        // A read that did not fill its room emptied the link for now: give
        // back what a burst grew the buffer to, keeping the unframed bytes.
        if n < offered {
            self.give_back();
        }
    }

    /// The read for the room from [`Framer::room`] found nothing (a
    /// readiness false alarm): the room is dropped and its memory given back.
    pub fn unfilled(&mut self) {
        self.settle();
        self.give_back();
    }

    /// Shrinks the buffer to the unframed bytes (at least [`MIN_ROOM`]) when
    /// it holds more than twice that.
    fn give_back(&mut self) {
        let keep = self.buf.len().max(MIN_ROOM);
        if self.buf.capacity() > 2 * keep {
            self.buf.shrink_to(keep);
        }
    }

    /// Like [`Framer::filled`], with each byte read first ANDed with `mask`
    /// (0x7f strips the parity bit of 7-bit serial data).
    pub fn filled_masked(&mut self, n: usize, mask: u8, out: &mut Vec<Frame>) {
        if let Some(at) = self.room_at {
            let end = (at + n).min(self.buf.len());
            self.buf[at..end].iter_mut().for_each(|b| *b &= mask);
        }
        self.filled(n, out);
    }

    /// Feeds one read made elsewhere; complete records are appended to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Frame>) {
        self.settle();
        self.buf.extend_from_slice(data);
        self.frame(out);
    }

    /// Drops the room of a read that never happened.
    fn settle(&mut self) {
        if let Some(at) = self.room_at.take() {
            self.buf.truncate(at);
        }
    }

    fn frame(&mut self, out: &mut Vec<Frame>) {
        loop {
            let pending = &self.buf[self.start..];
            let from = self.scanned.saturating_sub(self.eor_len - 1);
            match self.finder.find(&pending[from..]) {
                Some(at) => {
                    let end = from + at + self.eor_len;
                    if end <= self.max {
                        self.emit(end, RecordFlags::NONE, out);
                    } else {
                        self.emit(self.max, RecordFlags::truncated(), out);
                    }
                }
                None if pending.len() >= self.max => {
                    self.emit(self.max, RecordFlags::truncated(), out);
                }
                None => {
                    self.scanned = pending.len();
                    break;
                }
            }
        }
        self.compact();
    }

    /// Ends the stream: whatever is left becomes a record flagged unterminated.
    pub fn finish(&mut self) -> Option<Frame> {
        self.settle();
        let rest = &self.buf[self.start..];
        let frame = (!rest.is_empty()).then(|| Frame {
            bytes: rest.to_vec(),
            flags: RecordFlags::unterminated(),
        });
        self.buf.clear();
        self.start = 0;
        self.scanned = 0;
        frame
    }

    /// Bytes received but not yet part of a record.
    pub fn pending(&self) -> usize {
        self.room_at.unwrap_or(self.buf.len()) - self.start
    }

    /// Bytes of memory the framer's buffer holds.
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    fn emit(&mut self, len: usize, flags: RecordFlags, out: &mut Vec<Frame>) {
        let bytes = self.buf[self.start..self.start + len].to_vec();
        self.start += len;
        self.scanned = 0;
        out.push(Frame { bytes, flags });
    }

    fn compact(&mut self) {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame_all(eor: &[u8], max: usize, reads: &[&[u8]]) -> (Vec<Frame>, Option<Frame>) {
        let mut f = Framer::try_new(eor, max).unwrap();
        let mut out = Vec::new();
        for r in reads {
            f.push(r, &mut out);
        }
        let rest = f.finish();
        (out, rest)
    }

    fn plain(b: &[u8]) -> Frame {
        Frame {
            bytes: b.to_vec(),
            flags: RecordFlags::NONE,
        }
    }

    #[test]
    fn splits_on_crlf_and_keeps_terminator() {
        let (out, rest) = frame_all(b"\r\n", 100, &[b"a,1\r\nb,2\r", b"\nc"]);
        assert_eq!(out, vec![plain(b"a,1\r\n"), plain(b"b,2\r\n")]);
        assert_eq!(
            rest,
            Some(Frame {
                bytes: b"c".to_vec(),
                flags: RecordFlags::unterminated()
            })
        );
    }

    #[test]
    fn nul_bytes_and_invalid_utf8_are_kept() {
        let (out, rest) = frame_all(b"\n", 100, &[b"\x00\x00\xff\xfe\n\x00\n"]);
        assert_eq!(out, vec![plain(b"\x00\x00\xff\xfe\n"), plain(b"\x00\n")]);
        assert_eq!(rest, None);
    }

    #[test]
    fn nul_terminator_and_multi_byte_terminators() {
        let (out, _) = frame_all(b"\x00", 10, &[b"ab\x00cd\x00"]);
        assert_eq!(out, vec![plain(b"ab\x00"), plain(b"cd\x00")]);
        let (out, _) = frame_all(
            b"\x03\x03\x03",
            50,
            &[b"x\x03\x03", b"\x03y\x03", b"\x03\x03"],
        );
        assert_eq!(out, vec![plain(b"x\x03\x03\x03"), plain(b"y\x03\x03\x03")]);
    }

    #[test]
    fn record_exactly_at_max_is_whole() {
        let (out, rest) = frame_all(b"\r\n", 5, &[b"abc\r\n"]);
        assert_eq!(out, vec![plain(b"abc\r\n")]);
        assert_eq!(rest, None);
    }

    #[test]
    fn over_long_input_is_cut_and_flagged() {
        let (out, rest) = frame_all(b"\n", 4, &[b"abcdefghij\nxy"]);
        assert_eq!(
            out,
            vec![
                Frame {
                    bytes: b"abcd".to_vec(),
                    flags: RecordFlags::truncated()
                },
                Frame {
                    bytes: b"efgh".to_vec(),
                    flags: RecordFlags::truncated()
                },
                plain(b"ij\n"),
            ]
        );
        assert_eq!(rest.unwrap().bytes, b"xy");
    }

    #[test]
    fn ten_megabytes_without_terminator_never_buffers_more_than_max() {
        let mut f = Framer::try_new(b"\r\n", 4096).unwrap();
        let chunk = vec![b'x'; 65536];
        let mut out = Vec::new();
        let mut total = 0usize;
        for _ in 0..160 {
            f.push(&chunk, &mut out);
            assert!(f.pending() < 4096);
            total += out.iter().map(|fr| fr.bytes.len()).sum::<usize>();
            out.clear();
        }
        total += f.finish().map(|fr| fr.bytes.len()).unwrap_or(0);
        assert_eq!(total, 160 * 65536);
    }

    /// Reads `data` through [`Framer::room`], as a reader does, taking at
    /// most `sizes[i]` bytes per read (cycling through `sizes`).
    fn frame_by_room(
        eor: &[u8],
        max: usize,
        data: &[u8],
        sizes: &[usize],
    ) -> (Vec<Frame>, Option<Frame>) {
        let mut f = Framer::try_new(eor, max).unwrap();
        let mut out = Vec::new();
        let mut at = 0;
        let mut i = 0;
        while at < data.len() {
            let room = f.room();
            let n = room
                .len()
                .min(sizes[i % sizes.len()].max(1))
                .min(data.len() - at);
            room[..n].copy_from_slice(&data[at..at + n]);
            f.filled(n, &mut out);
            at += n;
            i += 1;
        }
        let rest = f.finish();
        (out, rest)
    }

    #[test]
    fn room_follows_the_arrival_rate_and_memory_is_given_back() {
        let line = b"0001,2026/11/24 13:00:00,00:01:05,4321,0123456789\r\n";
        let data: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 20_000)
            .collect();
        let mut f = Framer::try_new(b"\r\n", 4096).unwrap();
        let mut out = Vec::new();
        assert_eq!(f.room().len(), MIN_ROOM);
        f.push(&[], &mut out); // the read never happens
                               // A saturated link: every read fills the room, which grows to the cap.
        let mut at = 0;
        for _ in 0..8 {
            let room = f.room();
            let n = room.len();
            room.copy_from_slice(&data[at..at + n]);
            at += n;
            f.filled(n, &mut out);
        }
        assert!(f.capacity() >= MAX_ROOM / 2);
        assert_eq!(f.room().len(), MAX_ROOM);
        f.push(&[], &mut out);
        // The burst is over: small reads shrink the room and the buffer.
        for _ in 0..8 {
            let room = f.room();
            room[..line.len()].copy_from_slice(line);
            f.filled(line.len(), &mut out);
        }
        assert_eq!(f.room().len(), MIN_ROOM);
        f.push(&[], &mut out);
        assert!(f.capacity() <= 4 * MIN_ROOM, "capacity {}", f.capacity());
        let framed: usize = out.iter().map(|fr| fr.bytes.len()).sum();
        assert_eq!(framed + f.pending(), at + 8 * line.len());
    }

    #[test]
    fn a_read_that_never_happens_leaves_nothing_behind() {
        let mut f = Framer::try_new(b"\n", 100).unwrap();
        let mut out = Vec::new();
        f.push(b"ab", &mut out);
        let room = f.room();
        room[0] = b'x';
        // The read is cancelled: no `filled`.
        assert_eq!(f.pending(), 2);
        f.push(b"c\n", &mut out);
        assert_eq!(out, vec![plain(b"abc\n")]);
        let _ = f.room();
        assert_eq!(f.finish(), None);
    }

    #[test]
    fn a_false_alarm_gives_the_room_back() {
        let mut f = Framer::try_new(b"\n", 100).unwrap();
        let mut out = Vec::new();
        for _ in 0..5 {
            let room = f.room();
            let n = room.len();
            room.fill(b'x');
            room[n - 1] = b'\n';
            f.filled(n, &mut out);
        }
        let room = f.room().len();
        assert!(room > MIN_ROOM && f.capacity() >= room);
        f.unfilled();
        assert!(f.capacity() <= 2 * MIN_ROOM, "capacity {}", f.capacity());
        assert_eq!(f.pending(), 0);
        assert_eq!(
            f.room().len(),
            room,
            "a false alarm says nothing of the rate"
        );
    }

    #[test]
    fn rejects_bad_settings() {
        assert_eq!(
            Framer::try_new(b"", 10).unwrap_err(),
            FramerError::EmptyTerminator
        );
        assert_eq!(
            Framer::try_new(b"\r\n", 1).unwrap_err(),
            FramerError::MaxTooSmall { max: 1, eor: 2 }
        );
    }

    /// Splits `data` at the given cut points (taken modulo its length).
    fn split<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        if data.is_empty() {
            return vec![];
        }
        let mut points: Vec<usize> = cuts.iter().map(|c| c % data.len()).collect();
        points.sort_unstable();
        points.dedup();
        let mut parts = Vec::new();
        let mut prev = 0;
        for p in points {
            parts.push(&data[prev..p]);
            prev = p;
        }
        parts.push(&data[prev..]);
        parts
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any split of the input into reads gives the same records.
        #[test]
        fn any_split_gives_the_same_records(
            data in proptest::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(0u8), any::<u8>()], 0..600),
            eor in prop_oneof![Just(b"\r\n".to_vec()), Just(b"\n".to_vec()), Just(vec![0u8]), Just(b"\r\n\r".to_vec())],
            max in 3usize..64,
            cuts in proptest::collection::vec(any::<usize>(), 0..20),
        ) {
            let whole = frame_all(&eor, max, &[&data]);
            let parts = split(&data, &cuts);
            let pieces = frame_all(&eor, max, &parts);
            prop_assert_eq!(&whole, &pieces);
            let byte_by_byte: Vec<&[u8]> = data.chunks(1).collect();
            prop_assert_eq!(&whole, &frame_all(&eor, max, &byte_by_byte));
            let sizes: Vec<usize> = cuts.iter().map(|c| c % 50).collect();
            prop_assert_eq!(&whole, &frame_by_room(&eor, max, &data, if sizes.is_empty() { &[7] } else { &sizes }));

            // Nothing is lost or invented: the records concatenate to the input.
            let mut joined: Vec<u8> = whole.0.iter().flat_map(|f| f.bytes.clone()).collect();
            if let Some(rest) = &whole.1 { joined.extend_from_slice(&rest.bytes); }
            prop_assert_eq!(&joined, &data);
            for f in &whole.0 {
                prop_assert!(f.bytes.len() <= max);
                if f.flags.is_truncated() {
                    prop_assert_eq!(f.bytes.len(), max);
                } else {
                    prop_assert!(f.bytes.ends_with(&eor));
                }
            }
        }
    }
}
