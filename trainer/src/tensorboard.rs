//! TensorBoard event files, written natively (issue 16, item 7), so that `tensorboard --logdir runs/` shows every
//! run of a sweep: `<run>/tb/events.out.tfevents.<seconds>.<host>.<pid>.<train|eval>`, files per process (a resumed
//! run adds its own; TensorBoard reads them all).
//!
//! The format (TensorFlow's `TFRecord` of `Event` protobufs): each record is its length (u64, little endian), the
//! masked CRC-32C of those 8 bytes, the bytes, and their masked CRC-32C; masking is
//! `((crc >> 15) | (crc << 17)) + 0xa282ead8`. The first event carries `file_version = "brain.Event:2"`; the others
//! a `Summary` of scalar values (`tag`, `simple_value`) at a step. Only those few protobuf fields are written, by
//! hand: `Event { wall_time: double = 1, step: int64 = 2, file_version: string = 3, summary: Summary = 5 }`,
//! `Summary { repeated Value value = 1 }`, `Value { tag: string = 1, simple_value: float = 2 }`.

use std::io::Write;
use std::path::{Path, PathBuf};

fn masked_crc(bytes: &[u8]) -> u32 {
    let c = crc32c::crc32c(bytes);
    c.rotate_right(15).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u32, out: &mut Vec<u8>) {
    varint(((field << 3) | wire) as u64, out);
}

fn bytes_field(field: u32, b: &[u8], out: &mut Vec<u8>) {
    key(field, 2, out);
    varint(b.len() as u64, out);
    out.extend_from_slice(b);
}

/// An `Event` protobuf: wall time, step, and either the file version or scalar values.
pub fn event(
    wall_time: f64,
    step: i64,
    file_version: Option<&str>,
    scalars: &[(&str, f32)],
) -> Vec<u8> {
    let mut e = Vec::new();
    key(1, 1, &mut e);
    e.extend_from_slice(&wall_time.to_le_bytes());
    key(2, 0, &mut e);
    varint(step as u64, &mut e);
    if let Some(v) = file_version {
        bytes_field(3, v.as_bytes(), &mut e);
    }
    if !scalars.is_empty() {
        let mut summary = Vec::new();
        for (tag, v) in scalars {
            let mut value = Vec::new();
            bytes_field(1, tag.as_bytes(), &mut value);
            key(2, 5, &mut value);
            value.extend_from_slice(&v.to_le_bytes());
            bytes_field(1, &value, &mut summary);
        }
        bytes_field(5, &summary, &mut e);
    }
    e
}

/// One TFRecord around `data`.
pub fn record(data: &[u8]) -> Vec<u8> {
    let len = (data.len() as u64).to_le_bytes();
    let mut r = Vec::with_capacity(data.len() + 16);
    r.extend_from_slice(&len);
    r.extend_from_slice(&masked_crc(&len).to_le_bytes());
    r.extend_from_slice(data);
    r.extend_from_slice(&masked_crc(data).to_le_bytes());
    r
}

/// The records of an event file, each checked against its CRCs (for tests and tools): the `Event` bytes.
pub fn read_records(bytes: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let head = bytes.get(i..i + 12).ok_or("a truncated record header")?;
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        if masked_crc(&head[..8]) != u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) {
            return Err(format!("record at byte {i}: length CRC mismatch"));
        }
        let len = usize::try_from(len).map_err(|_| "a record length beyond memory")?;
        let end = i
            .checked_add(12 + len + 4)
            .filter(|e| *e <= bytes.len())
            .ok_or(format!("record at byte {i}: truncated"))?;
        let data = &bytes[i + 12..i + 12 + len];
        let crc = u32::from_le_bytes(bytes[end - 4..end].try_into().expect("4 bytes"));
        if masked_crc(data) != crc {
            return Err(format!("record at byte {i}: data CRC mismatch"));
        }
        out.push(data.to_vec());
        i = end;
    }
    Ok(out)
}

/// An open event file of a run.
pub struct EventWriter {
    file: std::fs::File,
    pub path: PathBuf,
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl EventWriter {
    /// A new event file in `<run>/tb/` (`…tfevents.<seconds>.<host>.<pid>.<what>`: training and evaluation write
    /// their own), starting with the file-version event.
    pub fn create(run_dir: &Path, what: &str) -> std::io::Result<EventWriter> {
        let dir = run_dir.join("tb");
        std::fs::create_dir_all(&dir)?;
        let host = physlab_generators::fsio::hostname();
        let path = dir.join(format!(
            "events.out.tfevents.{}.{host}.{}.{what}",
            now() as u64,
            std::process::id()
        ));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let mut w = EventWriter { file, path };
        w.file
            .write_all(&record(&event(now(), 0, Some("brain.Event:2"), &[])))?;
        Ok(w)
    }

    /// Scalars at `step` (`train/loss`, `eval/bits`, …).
    pub fn scalars(&mut self, step: u64, values: &[(&str, f64)]) -> std::io::Result<()> {
        let v: Vec<(&str, f32)> = values.iter().map(|(k, v)| (*k, *v as f32)).collect();
        self.file
            .write_all(&record(&event(now(), step as i64, None, &v)))
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's check value (RFC 3720: "123456789" → 0xE3069283), and a record that reads back.
    #[test]
    fn crc32c_and_records() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
        let e = event(1.5, 7, None, &[("train/loss", 2.5)]);
        let r = record(&e);
        assert_eq!(read_records(&r).unwrap(), vec![e]);
        let mut bad = r.clone();
        bad[14] ^= 1;
        assert!(read_records(&bad).is_err());
    }
}
