//! Shared XML plumbing: text escaping for the encoders, and a bounded pull
//! parser over quick-xml's [`Reader`] for the decoders.
//!
//! The parser never builds a tree. Callers walk the document with
//! [`Cursor::next`], read the text of leaf elements with
//! [`Cursor::read_text`] and skip unknown elements with [`Cursor::skip`].
//! Memory is bounded by the body (which callers limit in size) and nesting by
//! a depth limit, so hostile input can neither recurse nor blow the heap. No
//! DTD is accepted and no entity other than the five predefined ones and
//! character references is ever resolved.

use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::reader::Reader;

/// The deepest nesting of elements any decoder accepts (the root is level 1).
pub const MAX_DEPTH: usize = 16;

/// How many attributes of a root element are looked at before giving up.
pub(crate) const MAX_ROOT_ATTRIBUTES: usize = 32;

/// Strings quoted in errors are cut to this many characters.
const CLIP_CHARS: usize = 64;

/// Why a body is not an acceptable XML document (shared by acks and packets).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    #[error("not well-formed XML at byte {position}: {message}")]
    Syntax { position: u64, message: String },
    #[error("the body ends before its root element is closed")]
    Truncated,
    #[error("the body holds no root element")]
    NoRoot,
    #[error("elements are nested deeper than {max} levels")]
    TooDeep { max: usize },
    #[error("a document type declaration (DTD) is not allowed")]
    DocType,
    #[error("unknown entity reference &{0};")]
    UnknownEntity(String),
    #[error("character U+{0:04X} is not allowed in XML 1.0")]
    IllegalChar(u32),
    #[error("element <{0}> is not allowed here")]
    UnexpectedElement(String),
    #[error("end tag </{found}> does not close <{expected}>")]
    MismatchedEnd { expected: String, found: String },
    #[error("content after the root element")]
    TrailingContent,
    #[error("the root element has more than {max} attributes")]
    TooManyAttributes { max: usize },
    #[error("the XML declaration names encoding {0:?}; only UTF-8 is accepted")]
    UnsupportedEncoding(String),
}

/// Cuts a string for quoting in an error.
pub(crate) fn clip(s: &str) -> String {
    match s.char_indices().nth(CLIP_CHARS) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

/// Whether `c` may appear in an XML 1.0 document (the `Char` production).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}')
        || c >= '\u{10000}'
}

/// The first character of `s` that XML 1.0 does not allow, if any.
pub(crate) fn first_illegal_char(s: &str) -> Option<char> {
    // Fast path over bytes: only C0 controls and U+FFFE/U+FFFF (EF BF BE/BF)
    // can be illegal in a valid UTF-8 string.
    let b = s.as_bytes();
    let suspicious = b
        .iter()
        .any(|&x| (x < 0x20 && !matches!(x, b'\t' | b'\n' | b'\r')) || x == 0xEF);
    if !suspicious {
        return None;
    }
    s.chars().find(|&c| !is_xml_char(c))
}

/// Appends `text` to `out` escaped for XML character data: `<`, `>`, `&` as
/// the predefined entities and CR as `&#13;` (so a parser's end-of-line
/// normalization cannot turn CR LF into LF). Everything else is copied as is.
pub(crate) fn escape_text_into(text: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let rep: &[u8] = match b {
            b'<' => b"&lt;",
            b'>' => b"&gt;",
            b'&' => b"&amp;",
            b'\r' => b"&#13;",
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(rep);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
}

/// Like [`escape_text_into`], but characters XML 1.0 cannot carry at all are
/// replaced with U+FFFD, so the output is always well-formed.
pub(crate) fn escape_text_lossy_into(text: &str, out: &mut Vec<u8>) {
    if first_illegal_char(text).is_none() {
        escape_text_into(text.as_bytes(), out);
        return;
    }
    let cleaned: String = text
        .chars()
        .map(|c| if is_xml_char(c) { c } else { '\u{FFFD}' })
        .collect();
    escape_text_into(cleaned.as_bytes(), out);
}

/// What [`Cursor::next`] found.
pub(crate) enum Node<'a> {
    /// A start tag; `empty` for a self-closing `<x/>` (no end tag follows).
    Open { tag: BytesStart<'a>, empty: bool },
    /// An end tag, with its name (not yet checked against the open element).
    Close(String),
    /// Character data that is not only whitespace (text, CDATA, a reference).
    Text,
    /// The end of the body.
    Eof,
}

/// A depth-limited pull parser over one body.
pub(crate) struct Cursor<'a> {
    reader: Reader<&'a [u8]>,
    depth: usize,
    max_depth: usize,
    utf8_only: bool,
}

impl<'a> Cursor<'a> {
    /// A cursor over `text`. With `utf8_only`, an XML declaration naming an
    /// encoding other than UTF-8 is an error.
    pub(crate) fn new(text: &'a str, max_depth: usize, utf8_only: bool) -> Self {
        let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
        let mut reader = Reader::from_str(text);
        let config = reader.config_mut();
        // End tags are matched here (so the ack's `</HSG>` can be allowed).
        config.check_end_names = false;
        config.trim_text(false);
        config.expand_empty_elements = false;
        Cursor {
            reader,
            depth: 0,
            max_depth,
            utf8_only,
        }
    }

    fn syntax(&self, err: quick_xml::Error) -> XmlError {
        XmlError::Syntax {
            position: self.reader.error_position(),
            message: clip(&err.to_string()),
        }
    }

    fn read_event(&mut self) -> Result<Event<'a>, XmlError> {
        self.reader.read_event().map_err(|e| self.syntax(e))
    }

    fn check_decl(&self, decl: &quick_xml::events::BytesDecl<'_>) -> Result<(), XmlError> {
        if !self.utf8_only {
            return Ok(());
        }
        match decl.encoding() {
            None => Ok(()),
            Some(Ok(enc)) => {
                let enc = enc.trim();
                if enc.eq_ignore_ascii_case("utf-8") || enc.eq_ignore_ascii_case("utf8") {
                    Ok(())
                } else {
                    Err(XmlError::UnsupportedEncoding(clip(enc)))
                }
            }
            Some(Err(e)) => Err(XmlError::Syntax {
                position: self.reader.buffer_position(),
                message: clip(&e.to_string()),
            }),
        }
    }

    fn open(&mut self) -> Result<(), XmlError> {
        if self.depth >= self.max_depth {
            return Err(XmlError::TooDeep {
                max: self.max_depth,
            });
        }
        self.depth += 1;
        Ok(())
    }

    /// The next start tag, end tag, non-blank text or end of body. Comments,
    /// processing instructions, blank text and the XML declaration are passed
    /// over; a DTD or an unknown entity is an error.
    pub(crate) fn next(&mut self) -> Result<Node<'a>, XmlError> {
        loop {
            match self.read_event()? {
                Event::Start(tag) => {
                    self.open()?;
                    return Ok(Node::Open { tag, empty: false });
                }
                Event::Empty(tag) => {
                    if self.depth >= self.max_depth {
                        return Err(XmlError::TooDeep {
                            max: self.max_depth,
                        });
                    }
                    return Ok(Node::Open { tag, empty: true });
                }
                Event::End(end) => {
                    self.depth = self.depth.saturating_sub(1);
                    return Ok(Node::Close(end.name().0.to_owned()));
                }
                Event::Text(t) => {
                    if t.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
                        continue;
                    }
                    return Ok(Node::Text);
                }
                Event::GeneralRef(r) => {
                    // Resolve (and so check) it, then treat it as stray text.
                    push_ref(&mut String::new(), &r)?;
                    return Ok(Node::Text);
                }
                Event::CData(_) => return Ok(Node::Text),
                Event::Decl(d) => self.check_decl(&d)?,
                Event::Comment(_) | Event::PI(_) => {}
                Event::DocType(_) => return Err(XmlError::DocType),
                Event::Eof => return Ok(Node::Eof),
            }
        }
    }

    /// The root element: the first start tag, after an optional declaration,
    /// comments and blank text.
    pub(crate) fn root(&mut self) -> Result<(BytesStart<'a>, bool), XmlError> {
        match self.next()? {
            Node::Open { tag, empty } => Ok((tag, empty)),
            Node::Close(_) | Node::Text | Node::Eof => Err(XmlError::NoRoot),
        }
    }

    /// After the root element closed: only blank text, comments and
    /// processing instructions may follow.
    pub(crate) fn finish(&mut self) -> Result<(), XmlError> {
        match self.next()? {
            Node::Eof => Ok(()),
            Node::Open { .. } | Node::Close(_) | Node::Text => Err(XmlError::TrailingContent),
        }
    }

    /// The text content of element `name`, whose start tag was just read
    /// (not self-closing), up to and including its end tag. References are
    /// resolved, CR LF / CR are normalized to LF as XML requires, and a child
    /// element is an error.
    pub(crate) fn read_text(&mut self, name: &str) -> Result<String, XmlError> {
        let mut out = String::new();
        loop {
            match self.read_event()? {
                Event::Text(t) => {
                    if let Some(c) = first_illegal_char(&t) {
                        return Err(XmlError::IllegalChar(c as u32));
                    }
                    out.push_str(&t.xml10_content());
                }
                Event::CData(c) => {
                    let text = c.xml10_content();
                    if let Some(c) = first_illegal_char(&text) {
                        return Err(XmlError::IllegalChar(c as u32));
                    }
                    out.push_str(&text);
                }
                Event::GeneralRef(r) => push_ref(&mut out, &r)?,
                Event::Comment(_) | Event::PI(_) => {}
                Event::Start(tag) | Event::Empty(tag) => {
                    return Err(XmlError::UnexpectedElement(clip(tag.name().0)));
                }
                Event::End(end) => {
                    self.depth = self.depth.saturating_sub(1);
                    check_end(name, end.name().0)?;
                    return Ok(out);
                }
                Event::Decl(_) => {
                    return Err(XmlError::Syntax {
                        position: self.reader.buffer_position(),
                        message: "XML declaration inside an element".to_owned(),
                    })
                }
                Event::DocType(_) => return Err(XmlError::DocType),
                Event::Eof => return Err(XmlError::Truncated),
            }
        }
    }

    /// Skips element `name`, whose start tag was just read (not
    /// self-closing), with everything inside it.
    /// For a child element `name` (`empty` when self-closing): when it is one
    /// of `fields`, reads its text and returns that field; otherwise skips
    /// the element (unknown elements are allowed) and returns `None`.
    pub(crate) fn field(
        &mut self,
        name: &str,
        empty: bool,
        fields: &[&'static str],
    ) -> Result<Option<(&'static str, String)>, XmlError> {
        let Some(field) = fields.iter().copied().find(|f| *f == name) else {
            if !empty {
                self.skip(name)?;
            }
            return Ok(None);
        };
        let text = if empty {
            String::new()
        } else {
            self.read_text(field)?
        };
        Ok(Some((field, text)))
    }

    pub(crate) fn skip(&mut self, name: &str) -> Result<(), XmlError> {
        // Bounded by the depth limit that `next` enforces.
        let mut open: Vec<String> = vec![name.to_owned()];
        loop {
            match self.next()? {
                Node::Open { tag, empty: false } => open.push(tag.name().0.to_owned()),
                Node::Open { empty: true, .. } | Node::Text => {}
                Node::Close(found) => {
                    let expected = open.pop().unwrap_or_default();
                    check_end(&expected, &found)?;
                    if open.is_empty() {
                        return Ok(());
                    }
                }
                Node::Eof => return Err(XmlError::Truncated),
            }
        }
    }
}

/// Checks that end tag `found` closes element `expected`.
pub(crate) fn check_end(expected: &str, found: &str) -> Result<(), XmlError> {
    if expected == found {
        Ok(())
    } else {
        Err(XmlError::MismatchedEnd {
            expected: clip(expected),
            found: clip(found),
        })
    }
}

/// Appends what a reference stands for: a character reference (which must
/// name a legal XML character) or one of the five predefined entities.
/// Any other entity is an error; nothing is ever expanded from a DTD.
fn push_ref(out: &mut String, r: &BytesRef<'_>) -> Result<(), XmlError> {
    match r.resolve_char_ref() {
        Ok(Some(c)) if is_xml_char(c) => {
            out.push(c);
            Ok(())
        }
        Ok(Some(c)) => Err(XmlError::IllegalChar(c as u32)),
        Ok(None) => match resolve_predefined_entity(r) {
            Some(s) => {
                out.push_str(s);
                Ok(())
            }
            None => Err(XmlError::UnknownEntity(clip(r))),
        },
        Err(e) => Err(XmlError::Syntax {
            position: 0,
            message: clip(&format!("bad character reference &{};: {e}", clip(r))),
        }),
    }
}

/// The value of attribute `key` on `tag`, entity-resolved and normalized.
/// Looks at no more than [`MAX_ROOT_ATTRIBUTES`] attributes.
pub(crate) fn attribute(tag: &BytesStart<'_>, key: &str) -> Result<Option<String>, XmlError> {
    for (n, attr) in tag.attributes().enumerate() {
        if n >= MAX_ROOT_ATTRIBUTES {
            return Err(XmlError::TooManyAttributes {
                max: MAX_ROOT_ATTRIBUTES,
            });
        }
        let attr = attr.map_err(|e| XmlError::Syntax {
            position: 0,
            message: clip(&e.to_string()),
        })?;
        if attr.key.0 == key {
            let value = attr
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map_err(|e| match e {
                    quick_xml::Error::Escape(
                        quick_xml::escape::EscapeError::UnrecognizedEntity(_, name),
                    ) => XmlError::UnknownEntity(clip(&name)),
                    other => XmlError::Syntax {
                        position: 0,
                        message: clip(&other.to_string()),
                    },
                })?;
            if let Some(c) = first_illegal_char(&value) {
                return Err(XmlError::IllegalChar(c as u32));
            }
            return Ok(Some(value.trim().to_owned()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn escaped(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        escape_text_into(s, &mut out);
        out
    }

    #[test]
    fn escapes_markup_and_cr_only() {
        assert_eq!(
            escaped(b"a<b>&c\r\n\t\"'"),
            b"a&lt;b&gt;&amp;c&#13;\n\t\"'".to_vec()
        );
        assert_eq!(escaped(b"]]>"), b"]]&gt;".to_vec());
        assert_eq!(escaped(b""), b"".to_vec());
    }

    #[test]
    fn lossy_escape_replaces_illegal_chars() {
        let mut out = Vec::new();
        escape_text_lossy_into("a\u{1}b\u{FFFF}<", &mut out);
        assert_eq!(out, "a\u{FFFD}b\u{FFFD}&lt;".as_bytes());
    }

    #[test]
    fn xml_char_rule() {
        for c in [
            '\t',
            '\n',
            '\r',
            ' ',
            '~',
            '\u{7F}',
            '\u{85}',
            '\u{FFFD}',
            '\u{10FFFF}',
        ] {
            assert!(is_xml_char(c), "{c:?}");
        }
        for c in [
            '\0', '\u{1}', '\u{8}', '\u{B}', '\u{C}', '\u{1F}', '\u{FFFE}', '\u{FFFF}',
        ] {
            assert!(!is_xml_char(c), "{c:?}");
        }
        assert_eq!(first_illegal_char("ok \u{EFFF} fine"), None);
        assert_eq!(first_illegal_char("x\u{FFFE}"), Some('\u{FFFE}'));
    }

    #[test]
    fn clip_cuts_long_strings() {
        assert_eq!(clip("short"), "short");
        let long = "x".repeat(1000);
        assert_eq!(clip(&long).len(), CLIP_CHARS + 3);
    }

    proptest::proptest! {
        #[test]
        fn escape_matches_quick_xml_partial_escape(s in ".*") {
            let mut out = Vec::new();
            escape_text_into(s.as_bytes(), &mut out);
            let theirs = quick_xml::escape::partial_escape(s.as_str());
            proptest::prop_assert_eq!(out, theirs.as_bytes().to_vec());
        }
    }
}
