//! ISO BMFF boxes: headers, the parts of `moov` that define a stream, and the rewrite of `moof`.

use std::fmt;

/// A four-character box type.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FourCc(pub [u8; 4]);

impl FourCc {
    pub const FTYP: FourCc = FourCc(*b"ftyp");
    pub const MOOV: FourCc = FourCc(*b"moov");
    pub const MOOF: FourCc = FourCc(*b"moof");
    pub const MDAT: FourCc = FourCc(*b"mdat");
    pub const STYP: FourCc = FourCc(*b"styp");
    pub const SIDX: FourCc = FourCc(*b"sidx");
    pub const MFRA: FourCc = FourCc(*b"mfra");

    /// Whether it reads as a box type: printable ASCII.
    pub fn is_plausible(self) -> bool {
        self.0.iter().all(|byte| (0x20..0x7f).contains(byte))
    }
}

impl fmt::Debug for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for FourCc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_plausible() {
            write!(f, "{}", String::from_utf8_lossy(&self.0))
        } else {
            write!(f, "0x{:08x}", u32::from_be_bytes(self.0))
        }
    }
}

/// Why a box could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxError {
    pub message: String,
}

impl BoxError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// A box header: its type, the header's length, and the whole box's length (`None`: to the
/// end of the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: FourCc,
    pub header_len: usize,
    pub size: Option<u64>,
}

impl BoxHeader {
    /// Bytes needed before the header can be parsed: 8, or 16 with a 64-bit size.
    pub fn needed(bytes: &[u8]) -> usize {
        if bytes.len() >= 4 && u32::from_be_bytes(bytes[0..4].try_into().unwrap()) == 1 {
            16
        } else {
            8
        }
    }

    /// Parses a header from at least [`BoxHeader::needed`] bytes.
    pub fn parse(bytes: &[u8]) -> Result<BoxHeader, BoxError> {
        let size32 = u32::from_be_bytes(bytes[0..4].try_into().unwrap());
        let kind = FourCc(bytes[4..8].try_into().unwrap());
        if !kind.is_plausible() {
            return Err(BoxError::new(format!(
                "not a box (type {kind}): garbage or a wrong offset"
            )));
        }
        let (header_len, size) = match size32 {
            0 => (8, None),
            1 => (
                16,
                Some(u64::from_be_bytes(bytes[8..16].try_into().unwrap())),
            ),
            size => (8, Some(u64::from(size))),
        };
        if let Some(size) = size {
            if size < header_len as u64 {
                return Err(BoxError::new(format!(
                    "box {kind} has an invalid size {size}"
                )));
            }
        }
        Ok(BoxHeader {
            kind,
            header_len,
            size,
        })
    }
}

/// Iterates over the child boxes in `bytes` (a container's payload).
pub(crate) fn children(bytes: &[u8]) -> impl Iterator<Item = Result<(FourCc, &[u8]), BoxError>> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        if rest.len() < 8 || rest.len() < BoxHeader::needed(rest) {
            rest = &[];
            return Some(Err(BoxError::new("a child box header is cut short")));
        }
        let header = match BoxHeader::parse(rest) {
            Ok(header) => header,
            Err(error) => {
                rest = &[];
                return Some(Err(error));
            }
        };
        let size = header.size.unwrap_or(rest.len() as u64);
        if size > rest.len() as u64 {
            rest = &[];
            return Some(Err(BoxError::new(format!(
                "child box {} claims {size} bytes, only {} are left in its parent",
                header.kind,
                rest.len()
            ))));
        }
        let (whole, next) = rest.split_at(size as usize);
        rest = next;
        Some(Ok((header.kind, &whole[header.header_len..])))
    })
}

/// The first child of type `kind`.
pub(crate) fn child<'a>(bytes: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, BoxError> {
    for entry in children(bytes) {
        let (found, payload) = entry?;
        if &found.0 == kind {
            return Ok(Some(payload));
        }
    }
    Ok(None)
}

/// Reads big-endian integers from a box payload, with errors instead of panics.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], what: &'static str) -> Self {
        Self {
            bytes,
            position: 0,
            what,
        }
    }

    pub(crate) fn take(&mut self, length: usize) -> Result<&'a [u8], BoxError> {
        let end = self
            .position
            .checked_add(length)
            .filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(BoxError::new(format!("{} is cut short", self.what)));
        };
        let slice = &self.bytes[self.position..end];
        self.position = end;
        Ok(slice)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, BoxError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, BoxError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    pub(crate) fn u24(&mut self) -> Result<u32, BoxError> {
        let bytes = self.take(3)?;
        Ok(u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, BoxError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, BoxError> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().unwrap()))
    }

    pub(crate) fn skip(&mut self, length: usize) -> Result<(), BoxError> {
        self.take(length).map(|_| ())
    }

    /// What has not been read yet.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = &self.bytes[self.position..];
        self.position = self.bytes.len();
        rest
    }

    /// Version and flags of a full box.
    pub(crate) fn version_flags(&mut self) -> Result<(u8, u32), BoxError> {
        Ok((self.u8()?, self.u24()?))
    }
}

/// Writes a box: header then payload.
pub(crate) fn write_box(output: &mut Vec<u8>, kind: &[u8; 4], payload: &[u8]) {
    let size = 8 + payload.len();
    if let Ok(size) = u32::try_from(size) {
        output.extend_from_slice(&size.to_be_bytes());
        output.extend_from_slice(kind);
    } else {
        output.extend_from_slice(&1u32.to_be_bytes());
        output.extend_from_slice(kind);
        output.extend_from_slice(&(size as u64 + 8).to_be_bytes());
    }
    output.extend_from_slice(payload);
}
