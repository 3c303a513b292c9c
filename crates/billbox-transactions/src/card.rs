//! Card numbers (PANs) under PCI DSS: billbox keeps at most the first 6 and
//! the last 4 digits of one (requirement 3.4.1), never the full number.
//!
//! [`mask_card`] checks one card number given on its own (the submit API's
//! `card` field); [`mask_card_numbers`] finds and masks every card number in
//! arbitrary bytes (relayed AG packets, log text). Neither [`CardError`] nor
//! anything else here ever prints the digits it was given.

use std::borrow::Cow;
use std::fmt;

/// Fewest digits in a card number (ISO/IEC 7812).
const MIN_DIGITS: usize = 13;
/// Most digits in a card number (ISO/IEC 7812).
const MAX_DIGITS: usize = 19;
/// Leading digits a masked number may show (the BIN).
const SHOWN_FIRST: usize = 6;
/// Trailing digits a masked number may show.
const SHOWN_LAST: usize = 4;

/// A card number as billbox may keep it: at most the first 6 and last 4
/// digits visible, the rest `*` (`411111******1111`). 13 to 19 characters,
/// ASCII digits and `*` only, no separators.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MaskedCard(String);

impl MaskedCard {
    /// The masked number, e.g. `411111******1111`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MaskedCard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a text is not a card number billbox can take. The messages are fixed
/// sentences: they never contain the digits given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    /// Wrong length, a character other than digits, mask characters and
    /// single separators between groups, or a separator at either end.
    #[error(
        "the card number must be 13 to 19 digits (single spaces or '-' between groups allowed), \
         or a number masked with '*' or 'X'"
    )]
    NotACardNumber,
    /// A full number whose Luhn check digit is wrong (a typing mistake).
    #[error("the card number fails the Luhn check")]
    FailsLuhn,
    /// A masked number with a digit between its first 6 and last 4.
    #[error("the masked card number may show only its first 6 and last 4 digits")]
    MaskShowsTooMuch,
}

/// Checks `text` as one card number and returns it masked.
///
/// `text` (surrounding ASCII whitespace ignored) is either
/// - a full card number: 13 to 19 ASCII digits, with single spaces or `-`
///   allowed between groups (and removed), that passes the Luhn check. It is
///   masked to its first 6 digits, `*` for the middle and its last 4; also
///   for 13 to 15 digit numbers, where PCI DSS 3.4.1 allows at most that;
/// - or an already masked number: digits and at least one mask character
///   (`*`, `X` or `x`, all written as `*`), 13 to 19 characters without the
///   separators, with no digit between the first 6 and the last 4
///   ([`CardError::MaskShowsTooMuch`] otherwise). Its Luhn check cannot be
///   made and is not.
///
/// `mask_card(masked.as_str())` gives `masked` back.
pub fn mask_card(text: &str) -> Result<MaskedCard, CardError> {
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let mut buf = [0u8; MAX_DIGITS];
    let mut len = 0;
    let mut masks = 0;
    // At the start a separator is as wrong as after another separator.
    let mut after_sep = true;
    for &b in text.as_bytes() {
        match b {
            b'0'..=b'9' | b'*' | b'X' | b'x' => {
                if len == MAX_DIGITS {
                    return Err(CardError::NotACardNumber);
                }
                buf[len] = if b.is_ascii_digit() {
                    b
                } else {
                    masks += 1;
                    b'*'
                };
                len += 1;
                after_sep = false;
            }
            b' ' | b'-' if !after_sep => after_sep = true,
            _ => return Err(CardError::NotACardNumber),
        }
    }
    // `after_sep` is still (or again) set for an empty text or a trailing
    // separator.
    if after_sep || len < MIN_DIGITS {
        return Err(CardError::NotACardNumber);
    }
    let card = &buf[..len];
    if masks == 0 {
        if !luhn_ok(card) {
            return Err(CardError::FailsLuhn);
        }
        let mut masked = String::with_capacity(len);
        push_masked(card, &mut masked);
        return Ok(MaskedCard(masked));
    }
    if card[SHOWN_FIRST..len - SHOWN_LAST]
        .iter()
        .any(u8::is_ascii_digit)
    {
        return Err(CardError::MaskShowsTooMuch);
    }
    Ok(MaskedCard(card.iter().map(|&b| char::from(b)).collect()))
}

/// The Luhn (mod 10) check of `digits`, ASCII digits (`b"4111111111111111"`).
/// False for an empty slice or any byte that is not an ASCII digit.
pub fn luhn_ok(digits: &[u8]) -> bool {
    let mut luhn = Luhn::default();
    for &b in digits {
        if !b.is_ascii_digit() {
            return false;
        }
        luhn.push(b - b'0');
    }
    luhn.len > 0 && luhn.ok()
}

/// The Luhn sum, kept for both parities so that digits can be appended on
/// the right (the doubling is counted from the right).
#[derive(Default)]
struct Luhn {
    /// Digits at even positions (from the left) plain, odd ones doubled.
    even_plain: u32,
    /// Digits at odd positions plain, even ones doubled.
    odd_plain: u32,
    len: usize,
}

impl Luhn {
    fn push(&mut self, d: u8) {
        let plain = u32::from(d);
        let doubled = if d >= 5 { 2 * plain - 9 } else { 2 * plain };
        if self.len % 2 == 0 {
            self.even_plain += plain;
            self.odd_plain += doubled;
        } else {
            self.even_plain += doubled;
            self.odd_plain += plain;
        }
        self.len += 1;
    }

    /// Whether the digits pushed so far pass. The rightmost digit is plain,
    /// so the sum to use is the one where the last position's parity is plain.
    fn ok(&self) -> bool {
        let sum = if self.len % 2 == 1 {
            self.even_plain
        } else {
            self.odd_plain
        };
        sum % 10 == 0
    }
}

/// Appends `digits` (13 to 19 ASCII digits) masked: first 6, `*`, last 4.
fn push_masked<S: Extend<char>>(digits: &[u8], out: &mut S) {
    let n = digits.len();
    out.extend(digits[..SHOWN_FIRST].iter().map(|&b| char::from(b)));
    out.extend(std::iter::repeat_n('*', n - SHOWN_FIRST - SHOWN_LAST));
    out.extend(digits[n - SHOWN_LAST..].iter().map(|&b| char::from(b)));
}

fn is_separator(b: u8) -> bool {
    b == b' ' || b == b'-'
}

/// Replaces every card number in `bytes` by its masked form and says how
/// many it masked. Returns `bytes` borrowed when there was none.
///
/// A card number here is 13 to 19 ASCII digits passing the Luhn check,
/// written either as one maximal run of digits or as consecutive digit
/// groups with a single space or `-` between them (`4111 1111 1111 1111`,
/// `4111-1111-1111-1111`). A run of 20 or more digits with no separator is
/// not a card number and is left alone. When groups are joined by separators
/// (`4111111111111111 12 items`), every stretch of whole groups is tried,
/// leftmost first and the longest passing one at that start, so a card
/// number next to other numbers is still found. The masked form is the
/// first 6 digits, one `*` per middle digit and the last 4, with the
/// separators inside it dropped; everything else is copied unchanged.
///
/// Works on any bytes (not only UTF-8, never panics) in one pass: each
/// start is tried against at most 19 digits, so the time is linear.
pub fn mask_card_numbers(bytes: &[u8]) -> (Cow<'_, [u8]>, usize) {
    let n = bytes.len();
    let mut out: Option<Vec<u8>> = None;
    let mut copied = 0;
    let mut count = 0;
    // The digit groups (start, end) of the current separator-joined run.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < n {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        groups.clear();
        let mut j = i;
        let mut total = 0;
        loop {
            let start = j;
            while j < n && bytes[j].is_ascii_digit() {
                j += 1;
            }
            groups.push((start, j));
            total += j - start;
            if j + 1 < n && is_separator(bytes[j]) && bytes[j + 1].is_ascii_digit() {
                j += 1;
            } else {
                break;
            }
        }
        i = j;
        if total < MIN_DIGITS {
            continue;
        }
        let mut g = 0;
        while g < groups.len() {
            let Some(found) = card_from(bytes, &groups[g..]) else {
                g += 1;
                continue;
            };
            let start = groups[g].0;
            let end = groups[g + found.last_group].1;
            let buf = out.get_or_insert_with(|| Vec::with_capacity(n));
            buf.extend_from_slice(&bytes[copied..start]);
            push_masked_bytes(&found.digits[..found.len], buf);
            copied = end;
            count += 1;
            g += found.last_group + 1;
        }
    }
    match out {
        Some(mut buf) => {
            buf.extend_from_slice(&bytes[copied..]);
            (Cow::Owned(buf), count)
        }
        None => (Cow::Borrowed(bytes), 0),
    }
}

fn push_masked_bytes(digits: &[u8], out: &mut Vec<u8>) {
    let n = digits.len();
    out.extend_from_slice(&digits[..SHOWN_FIRST]);
    out.extend(std::iter::repeat_n(b'*', n - SHOWN_FIRST - SHOWN_LAST));
    out.extend_from_slice(&digits[n - SHOWN_LAST..]);
}

/// A card number made of `groups[..=last_group]`.
struct Found {
    last_group: usize,
    digits: [u8; MAX_DIGITS],
    len: usize,
}

/// The longest stretch of whole groups from `groups[0]` that is a card
/// number, if any. Reads at most [`MAX_DIGITS`] + 1 digits.
fn card_from(bytes: &[u8], groups: &[(usize, usize)]) -> Option<Found> {
    let mut digits = [0u8; MAX_DIGITS];
    let mut luhn = Luhn::default();
    let mut best = None;
    for (k, &(start, end)) in groups.iter().enumerate() {
        if luhn.len + (end - start) > MAX_DIGITS {
            break;
        }
        for &b in &bytes[start..end] {
            digits[luhn.len] = b;
            luhn.push(b - b'0');
        }
        if luhn.len >= MIN_DIGITS && luhn.ok() {
            best = Some((k, luhn.len));
        }
    }
    best.map(|(last_group, len)| Found {
        last_group,
        digits,
        len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const VISA: &str = "4111111111111111";

    fn masked(text: &str) -> String {
        mask_card(text).map(|m| m.to_string()).unwrap()
    }

    fn mask_all(text: &str) -> (String, usize) {
        let (out, n) = mask_card_numbers(text.as_bytes());
        (String::from_utf8(out.into_owned()).unwrap(), n)
    }

    #[test]
    fn luhn_known_numbers() {
        for good in [
            VISA,
            "378282246310005",
            "4222222222222",
            "6011111111111117",
            "5555555555554444",
            "79927398713",
            "4000000000000000006",
            "0",
        ] {
            assert!(luhn_ok(good.as_bytes()), "{good}");
        }
        for bad in ["4111111111111112", "79927398710", "", "4111 1111", "41a1"] {
            assert!(!luhn_ok(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn masks_full_numbers_of_every_length() {
        assert_eq!(masked(VISA), "411111******1111");
        assert_eq!(masked("4222222222222"), "422222***2222");
        assert_eq!(masked("378282246310005"), "378282*****0005");
        assert_eq!(masked("4000000000000000006"), "400000*********0006");
    }

    #[test]
    fn removes_separators_and_surrounding_whitespace() {
        assert_eq!(masked("4111 1111 1111 1111"), "411111******1111");
        assert_eq!(masked("4111-1111-1111-1111"), "411111******1111");
        assert_eq!(masked("3782-822463-10005"), "378282*****0005");
        assert_eq!(masked(" 4111 1111-1111 1111\n"), "411111******1111");
    }

    #[test]
    fn refuses_what_is_not_a_card_number() {
        for text in [
            "",
            "   ",
            "411111111111",            // 12 digits
            "41111111111111111111",    // 20 digits
            "4111  1111 1111 1111",    // double space
            "4111 -1111 1111 1111",    // two separators
            "-4111111111111111",       // leading separator
            "4111111111111111-",       // trailing separator
            "4111.1111.1111.1111",     // other separator
            "4111111111111111a",       // a letter
            "\u{0664}111111111111111", // a non-ASCII digit
            "411111******11111111",    // 20 characters, masked
            "411111*****",             // too short, masked
            "4111_1111_1111_1111",
        ] {
            assert_eq!(mask_card(text), Err(CardError::NotACardNumber), "{text:?}");
        }
    }

    #[test]
    fn refuses_a_wrong_check_digit() {
        assert_eq!(mask_card("4111111111111112"), Err(CardError::FailsLuhn));
        assert_eq!(mask_card("4111 1111 1111 1112"), Err(CardError::FailsLuhn));
    }

    #[test]
    fn takes_masked_numbers_and_normalises_the_mask() {
        assert_eq!(masked("411111******1111"), "411111******1111");
        assert_eq!(masked("411111XXXXXX1111"), "411111******1111");
        assert_eq!(masked("411111xxxxxx1111"), "411111******1111");
        assert_eq!(masked("XXXX-XXXX-XXXX-1111"), "************1111");
        assert_eq!(masked("************1111"), "************1111");
        assert_eq!(masked("4111 11** **** 1111"), "411111******1111");
        assert_eq!(masked("411111***1111"), "411111***1111");
        assert_eq!(masked("41*111******11*1"), "41*111******11*1");
        assert_eq!(masked("****************"), "****************");
    }

    #[test]
    fn refuses_masked_numbers_showing_too_much() {
        for text in [
            "4111111*****1111",
            "411111*****11111",
            "411111**1***1111",
            "4111111111111*11",
            "411111111111*111",
        ] {
            assert_eq!(
                mask_card(text),
                Err(CardError::MaskShowsTooMuch),
                "{text:?}"
            );
        }
    }

    #[test]
    fn error_messages_carry_no_digits_from_the_input() {
        for text in [
            "4111111111111112",
            "41111111111111111111",
            "4111111*****1111",
            "4111 1111 1111 111a",
        ] {
            let err = mask_card(text).unwrap_err();
            for shown in [err.to_string(), format!("{err:?}")] {
                assert!(!shown.contains("1111"), "{shown}");
                assert!(!shown.contains("4111"), "{shown}");
            }
        }
    }

    #[test]
    fn masked_card_shows_only_the_masked_number() {
        let card = mask_card(VISA).unwrap();
        assert_eq!(card.as_str(), "411111******1111");
        assert_eq!(format!("{card}"), "411111******1111");
        assert!(!format!("{card:?}").contains(VISA));
    }

    #[test]
    fn masks_numbers_in_text() {
        assert_eq!(
            mask_all("paid with 4111111111111111, thanks"),
            ("paid with 411111******1111, thanks".to_owned(), 1)
        );
        assert_eq!(
            mask_all("<CARD>4111 1111 1111 1111</CARD><X>5555-5555-5555-4444</X>"),
            (
                "<CARD>411111******1111</CARD><X>555555******4444</X>".to_owned(),
                2
            )
        );
        assert_eq!(
            mask_all("4111111111111111"),
            ("411111******1111".to_owned(), 1)
        );
        assert_eq!(
            mask_all("a4222222222222b378282246310005"),
            ("a422222***2222b378282*****0005".to_owned(), 2)
        );
    }

    #[test]
    fn finds_numbers_next_to_other_digit_groups() {
        assert_eq!(
            mask_all("card 4111111111111111 12 items"),
            ("card 411111******1111 12 items".to_owned(), 1)
        );
        // "2024 4111…" is 20 digits: too long, so the card alone is masked.
        assert_eq!(
            mask_all("2024 4111 1111 1111 1111"),
            ("2024 411111******1111".to_owned(), 1)
        );
        assert_eq!(
            mask_all("4111111111111111 5555555555554444"),
            ("411111******1111 555555******4444".to_owned(), 2)
        );
    }

    #[test]
    fn leaves_other_numbers_alone() {
        for text in [
            "",
            "no digits at all",
            "4111111111111112",       // fails Luhn
            "411111111111",           // 12 digits
            "41111111111111111111",   // 20 digits in one run: not a card
            "4111  1111  1111  1111", // double spaces split it up
            "4111.1111.1111.1111",
            "REC_NUM 00923 DATE 05/01/2024 TIME 12:30:00 AMOUNT 234.34",
            "79927398713",
        ] {
            let (out, n) = mask_card_numbers(text.as_bytes());
            assert_eq!(n, 0, "{text:?}");
            assert!(matches!(out, Cow::Borrowed(_)), "{text:?}");
            assert_eq!(&*out, text.as_bytes());
        }
    }

    #[test]
    fn works_on_bytes_that_are_not_utf8() {
        let mut input = vec![0xff, 0xfe];
        input.extend_from_slice(VISA.as_bytes());
        input.push(0x80);
        let (out, n) = mask_card_numbers(&input);
        assert_eq!(n, 1);
        let mut want = vec![0xff, 0xfe];
        want.extend_from_slice(b"411111******1111");
        want.push(0x80);
        assert_eq!(&*out, &want[..]);
    }

    #[test]
    fn linear_on_worst_case_input() {
        // Single-digit groups are the most starts per byte; no stretch of
        // ones passes the Luhn check, so every start is tried in full.
        let start = std::time::Instant::now();
        let ones = "1 ".repeat(200_000);
        assert_eq!(mask_card_numbers(ones.as_bytes()).1, 0);
        // Every stretch of zeros passes: 19 of them are masked at a time.
        let zeros = "0 ".repeat(19 * 1000);
        let (out, n) = mask_card_numbers(zeros.as_bytes());
        assert_eq!(n, 1000);
        assert!(out.starts_with(b"000000*********0000 000000*********0000 "));
        let digits = "9".repeat(1_000_000);
        assert_eq!(mask_card_numbers(digits.as_bytes()).1, 0);
        assert!(start.elapsed() < std::time::Duration::from_secs(20));
    }

    /// A Luhn-valid number of `body.len() + 1` digits.
    fn with_check_digit(body: &[u8]) -> String {
        let mut s: String = body.iter().map(|d| char::from(b'0' + d)).collect();
        for c in b'0'..=b'9' {
            s.push(char::from(c));
            if luhn_ok(s.as_bytes()) {
                return s;
            }
            s.pop();
        }
        unreachable!("one check digit always fits")
    }

    fn card_number() -> impl Strategy<Value = String> {
        proptest::collection::vec(0u8..10, 12..=18).prop_map(|body| with_check_digit(&body))
    }

    /// `card` written in groups of `sizes`, joined by `seps`.
    fn grouped(card: &str, sizes: &[usize], seps: &[char]) -> String {
        let mut out = String::new();
        let mut rest = card;
        for (k, &size) in sizes.iter().enumerate() {
            if rest.is_empty() {
                break;
            }
            if k > 0 {
                out.push(seps[k % seps.len()]);
            }
            let (head, tail) = rest.split_at(size.min(rest.len()));
            out.push_str(head);
            rest = tail;
        }
        if !rest.is_empty() {
            out.push(seps[0]);
            out.push_str(rest);
        }
        out
    }

    proptest! {
        #[test]
        fn never_panics_and_never_grows(input in proptest::collection::vec(any::<u8>(), 0..2000)) {
            let (out, n) = mask_card_numbers(&input);
            prop_assert!(out.len() <= input.len());
            prop_assert!(n <= input.len() / MIN_DIGITS);
            if n == 0 {
                prop_assert_eq!(&*out, &input[..]);
            }
        }

        #[test]
        fn never_panics_on_digit_heavy_input(input in "[0-9 \\-*x]{0,400}") {
            let (out, n) = mask_card_numbers(input.as_bytes());
            prop_assert!(out.len() <= input.len());
            // Every masked number hides at least 3 digits behind '*'.
            let stars = |b: &[u8]| b.iter().filter(|&&c| c == b'*').count();
            prop_assert!(stars(&out) >= stars(input.as_bytes()) + 3 * n);
            let _ = mask_card(&input);
        }

        #[test]
        fn every_embedded_card_is_masked(
            parts in proptest::collection::vec(
                (card_number(), proptest::collection::vec(1usize..8, 1..6), "[a-zA-Z<>/=\"]{1,3}[0-9]{0,5}[a-zA-Z<>/=\" ]{0,6}[a-zA-Z<>/=\"]"),
                1..6,
            ),
            lead in "[a-zA-Z ]{0,5}",
        ) {
            let mut text = lead.clone();
            for (card, sizes, filler) in &parts {
                text.push_str(&grouped(card, sizes, &[' ', '-']));
                text.push_str(filler);
            }
            let (out, n) = mask_card_numbers(text.as_bytes());
            let out = String::from_utf8(out.into_owned()).unwrap();
            prop_assert_eq!(n, parts.len(), "{} -> {}", text, out);
            for (card, _, _) in &parts {
                let want = mask_card(card).unwrap();
                prop_assert!(out.contains(want.as_str()), "{} -> {}", text, out);
                let joined: String = out.chars().filter(|&c| c != ' ' && c != '-').collect();
                prop_assert!(!joined.contains(card.as_str()), "{} -> {}", text, out);
            }
        }

        #[test]
        fn mask_card_round_trips(card in card_number(), sizes in proptest::collection::vec(1usize..8, 1..6)) {
            let once = mask_card(&grouped(&card, &sizes, &[' ', '-'])).unwrap();
            prop_assert_eq!(once.as_str().len(), card.len());
            prop_assert_eq!(&once.as_str()[..6], &card[..6]);
            prop_assert_eq!(&once.as_str()[card.len() - 4..], &card[card.len() - 4..]);
            prop_assert!(once.as_str()[6..card.len() - 4].bytes().all(|b| b == b'*'));
            prop_assert_eq!(mask_card(once.as_str()).unwrap(), once.clone());
            // The same number found in text masks the same way.
            let (out, n) = mask_card_numbers(card.as_bytes());
            prop_assert_eq!(n, 1);
            prop_assert_eq!(&*out, once.as_str().as_bytes());
        }

        #[test]
        fn errors_never_show_input_digits(text in "[0-9 \\-*Xx]{0,25}") {
            if let Err(err) = mask_card(&text) {
                for shown in [err.to_string(), format!("{err:?}")] {
                    // The fixed messages hold no run of 3 digits or more.
                    let longest = shown
                        .split(|c: char| !c.is_ascii_digit())
                        .map(str::len)
                        .max()
                        .unwrap_or(0);
                    prop_assert!(longest <= 2, "{}", shown);
                }
            }
        }
    }
}
