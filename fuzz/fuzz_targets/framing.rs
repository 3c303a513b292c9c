//! Framing: any bytes, any terminator, any split into reads: the records
//! concatenate back to the input, none is longer than max_record_bytes, and
//! the split does not change them.
#![no_main]

use billbox_record::Framer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let eor_len = 1 + (data[0] % 3) as usize;
    let max = eor_len + (data[1] as usize % 64);
    let step = 1 + data[2] as usize % 17;
    let (eor, input) = data[3..].split_at(eor_len.min(data.len() - 3));
    if eor.is_empty() {
        return;
    }
    let run = |chunk: usize| {
        let mut f = Framer::try_new(eor, max).unwrap();
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            f.push(piece, &mut out);
        }
        let rest = f.finish();
        (out, rest)
    };
    let (whole, rest) = run(input.len().max(1));
    let (pieces, rest2) = run(step);
    assert_eq!(whole, pieces);
    assert_eq!(rest, rest2);
    let mut joined: Vec<u8> = whole.iter().flat_map(|f| f.bytes.clone()).collect();
    if let Some(r) = &rest {
        joined.extend_from_slice(&r.bytes);
    }
    assert_eq!(joined, input);
    for f in &whole {
        assert!(f.bytes.len() <= max);
        assert!(f.flags.is_truncated() || f.bytes.ends_with(eor));
    }
});
