//! The rotator's durable state, kept as a metadata entry of its port.

/// The metadata name under which a port's file state is kept.
pub const META_NAME: &str = "files";

/// Where a port's files stand.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileState {
    /// The last sequence written into a closed (`.txt`) file; 0 for none.
    pub cursor: u64,
    /// The file being written, if any.
    pub open: Option<OpenState>,
}

/// A file that was opened and not yet known to be closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenState {
    /// The file's name without extension.
    pub stem: String,
    /// The sequence of its first record (always `cursor + 1`).
    pub first: u64,
    /// Set, durably, once the file is complete and about to be renamed: the
    /// sequence of its last record.
    pub closing_last: Option<u64>,
}

/// The state could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the stored file state is malformed ({0} bytes)")]
pub struct StateDecodeError(pub usize);

const VERSION: u8 = 1;

impl FileState {
    /// `version | cursor | has_open | first | closing_last (0 = none) | stem`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(34);
        out.push(VERSION);
        out.extend_from_slice(&self.cursor.to_be_bytes());
        match &self.open {
            None => out.push(0),
            Some(open) => {
                out.push(1);
                out.extend_from_slice(&open.first.to_be_bytes());
                out.extend_from_slice(&open.closing_last.unwrap_or(0).to_be_bytes());
                out.extend_from_slice(open.stem.as_bytes());
            }
        }
        out
    }

    pub fn decode(v: &[u8]) -> Result<FileState, StateDecodeError> {
        let bad = || StateDecodeError(v.len());
        let u64_at = |at: usize| -> Result<u64, StateDecodeError> {
            let b: [u8; 8] = v
                .get(at..at + 8)
                .ok_or_else(bad)?
                .try_into()
                .map_err(|_| bad())?;
            Ok(u64::from_be_bytes(b))
        };
        if v.first() != Some(&VERSION) {
            return Err(bad());
        }
        let cursor = u64_at(1)?;
        let open = match v.get(9) {
            Some(0) => None,
            Some(1) => {
                let first = u64_at(10)?;
                let last = u64_at(18)?;
                let stem = String::from_utf8(v[26..].to_vec()).map_err(|_| bad())?;
                Some(OpenState {
                    stem,
                    first,
                    closing_last: (last != 0).then_some(last),
                })
            }
            _ => return Err(bad()),
        };
        Ok(FileState { cursor, open })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for s in [
            FileState::default(),
            FileState {
                cursor: 9,
                open: Some(OpenState {
                    stem: "cycgw-260101.000000_3".into(),
                    first: 10,
                    closing_last: None,
                }),
            },
            FileState {
                cursor: 9,
                open: Some(OpenState {
                    stem: "x".into(),
                    first: 10,
                    closing_last: Some(59),
                }),
            },
        ] {
            assert_eq!(FileState::decode(&s.encode()).unwrap(), s);
        }
        assert!(FileState::decode(&[]).is_err());
        assert!(FileState::decode(&[1, 0, 0]).is_err());
        assert!(FileState::decode(&[1, 0, 0, 0, 0, 0, 0, 0, 0, 7]).is_err());
    }
}
