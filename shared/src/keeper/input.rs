//! The byte layer: gzip sniffed from the content (magic `1f 8b`, multi-member), a cap on
//! decompressed bytes, and errors told apart by where they came from.

use std::io::{self, BufRead, BufReader, Chain, Cursor, Read};

use flate2::bufread::MultiGzDecoder;

/// The gzip magic bytes (RFC 1952 §2.3.1).
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Read buffer size: large enough that syscalls and dyn calls vanish in the parse cost.
pub(crate) const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why reading stopped.
#[derive(Debug)]
pub(crate) enum InputError {
    /// The underlying reader failed: an I/O problem, transient.
    Source(io::Error),
    /// The gzip stream is corrupt or ends early.
    Gzip(io::Error),
    /// Decompression passed the configured cap (gzip-bomb guard).
    TooLarge { limit: u64 },
}

/// Marks errors raised by the caller's reader, so they are not mistaken for bad gzip.
#[derive(Debug)]
struct SourceFailure(io::Error);

impl std::fmt::Display for SourceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}
impl std::error::Error for SourceFailure {}

/// Marks the decompression cap being hit.
#[derive(Debug)]
struct CapReached(u64);

impl std::fmt::Display for CapReached {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "decompressed input exceeds {} bytes", self.0)
    }
}
impl std::error::Error for CapReached {}

/// Wraps the caller's reader so its errors are recognisable after passing through flate2.
struct Tap<R>(R);

impl<R: Read> Read for Tap<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io::Error::new(e.kind(), SourceFailure(e))),
                ok => return ok,
            }
        }
    }
}

/// Stops with [`CapReached`] once more than `limit` bytes have come through.
struct Capped<R> {
    inner: R,
    seen: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.seen = self.seen.saturating_add(n as u64);
        if self.seen > self.limit {
            return Err(io::Error::other(CapReached(self.limit)));
        }
        Ok(n)
    }
}

/// Sorts an error raised while reading decoded bytes.
pub(crate) fn classify(error: io::Error, gzip: bool) -> InputError {
    if let Some(inner) = error.get_ref() {
        if let Some(cap) = inner.downcast_ref::<CapReached>() {
            return InputError::TooLarge { limit: cap.0 };
        }
        if inner.is::<SourceFailure>() {
            let kind = error.kind();
            let inner = error
                .into_inner()
                .and_then(|b| b.downcast::<SourceFailure>().ok())
                .map(|b| b.0)
                .unwrap_or_else(|| io::Error::from(kind));
            return InputError::Source(inner);
        }
    }
    if gzip {
        InputError::Gzip(error)
    } else {
        InputError::Source(error)
    }
}

type Prefixed<'a> = Chain<Cursor<Vec<u8>>, Tap<Box<dyn Read + Send + 'a>>>;

/// The decoded byte stream and whether it was gzip.
pub(crate) struct Opened<'a> {
    pub(crate) reader: Box<dyn BufRead + Send + 'a>,
    pub(crate) gzip: bool,
}

/// Reads the first bytes to sniff gzip, then stacks the decoders. An error reading those
/// first bytes is returned as is.
pub(crate) fn open<'a>(
    reader: Box<dyn Read + Send + 'a>,
    max_decompressed_bytes: u64,
) -> Result<Opened<'a>, InputError> {
    let mut tap = Tap(reader);
    let mut head = Vec::with_capacity(GZIP_MAGIC.len());
    let mut byte = [0u8; 1];
    while head.len() < GZIP_MAGIC.len() {
        match tap.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(classify(e, false)),
        }
    }
    let gzip = head == GZIP_MAGIC;
    let stream: Prefixed<'a> = Cursor::new(head).chain(tap);
    let reader: Box<dyn BufRead + Send + 'a> = if gzip {
        let inflated = MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER_BYTES, stream));
        Box::new(BufReader::with_capacity(
            READ_BUFFER_BYTES,
            Capped {
                inner: inflated,
                seen: 0,
                limit: max_decompressed_bytes,
            },
        ))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, stream))
    };
    Ok(Opened { reader, gzip })
}
