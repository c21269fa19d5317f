//! The byte format of a snapshot: the state tree's (key, value) pairs,
//! streamed one at a time so a snapshot never has to fit in memory.
//!
//! ```text
//! record := 0x01 key_len:u32le key value_len:u32le value
//! file   := record* 0x00
//! ```
//!
//! The closing `0x00` tells a complete snapshot from a truncated one.
//! Written by hand rather than through the codec: bincode's serde path
//! encodes byte vectors element by element, and a snapshot is nothing but
//! byte strings.

use std::io::{self, BufRead, Read, Write};

const RECORD: u8 = 1;
const END: u8 = 0;

/// Writes records to `out`; [`RecordWriter::finish`] closes the stream.
pub struct RecordWriter<W: Write> {
    out: W,
}

impl<W: Write> RecordWriter<W> {
    pub fn new(out: W) -> Self {
        RecordWriter { out }
    }

    pub fn write(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        self.out.write_all(&[RECORD])?;
        write_bytes(&mut self.out, key)?;
        write_bytes(&mut self.out, value)
    }

    /// Writes the end marker, flushes, and hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[END])?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn write_bytes(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let len = u32::try_from(bytes.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(bytes)
}

/// Reads records until the end marker; a stream that stops before it, or
/// has bytes after it, is an error.
pub struct RecordReader<R: BufRead> {
    input: R,
    done: bool,
}

impl<R: BufRead> RecordReader<R> {
    pub fn new(input: R) -> Self {
        RecordReader { input, done: false }
    }

    fn next_record(&mut self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut tag = [0u8; 1];
        self.input.read_exact(&mut tag).map_err(truncated)?;
        match tag[0] {
            RECORD => {
                let key = read_bytes(&mut self.input)?;
                let value = read_bytes(&mut self.input)?;
                Ok(Some((key, value)))
            }
            END => {
                if !self.input.fill_buf()?.is_empty() {
                    return Err(invalid("bytes after the end of the snapshot"));
                }
                Ok(None)
            }
            other => Err(invalid(&format!("unknown record tag {other:#04x}"))),
        }
    }
}

impl<R: BufRead> Iterator for RecordReader<R> {
    type Item = io::Result<(Vec<u8>, Vec<u8>)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_record() {
            Ok(Some(record)) => Some(Ok(record)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

fn read_bytes(input: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    input.read_exact(&mut len).map_err(truncated)?;
    let len = u32::from_le_bytes(len) as usize;
    let mut bytes = Vec::new();
    let read = input.take(len as u64).read_to_end(&mut bytes)?;
    if read != len {
        return Err(invalid("snapshot is truncated"));
    }
    Ok(bytes)
}

fn truncated(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        invalid("snapshot is truncated")
    } else {
        e
    }
}

fn invalid(why: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(records: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut writer = RecordWriter::new(Vec::new());
        for (key, value) in records {
            writer.write(key, value).unwrap();
        }
        writer.finish().unwrap()
    }

    fn decoded(bytes: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        RecordReader::new(bytes).collect()
    }

    #[test]
    fn records_round_trip() {
        let records: [(&[u8], &[u8]); 3] = [(b"r/a", b""), (b"", b"x"), (b"t/a\0v1", &[7; 70_000])];
        let back = decoded(&encoded(&records)).unwrap();
        assert_eq!(back.len(), 3);
        for ((key, value), (k, v)) in records.iter().zip(&back) {
            assert_eq!(key, k);
            assert!(value == v);
        }
        assert!(decoded(&encoded(&[])).unwrap().is_empty());
    }

    #[test]
    fn a_cut_short_or_padded_snapshot_is_refused() {
        let bytes = encoded(&[(b"key", b"value"), (b"k2", b"v2")]);
        for cut in 0..bytes.len() {
            let err = decoded(&bytes[..cut]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(decoded(&padded).is_err());
        let mut bad_tag = bytes;
        bad_tag[0] = 9;
        assert!(decoded(&bad_tag).is_err());
    }
}
