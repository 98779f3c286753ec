//! Spill files: at shutdown, a memory buffer's events, written to disk as NDJSON (canonical enriched
//! events, the write-ahead log's format) before the last flush is tried, and replayed at the next start by
//! [`commerce_analytics::sink::wal::replay`]. The store's exactly-once lookup makes replaying events that
//! the last flush did store harmless.

use std::io::Write;
use std::path::{Path, PathBuf};

use commerce_analytics::event::Event;

pub fn write(dir: &Path, events: &[Event]) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let name = format!(
        "spill-{}.ndjson",
        time::OffsetDateTime::now_utc().unix_timestamp_nanos()
    );
    let path = dir.join(name);
    let tmp = path.with_extension("tmp");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
    for e in events {
        serde_json::to_writer(&mut f, e)?;
        f.write_all(b"\n")?;
    }
    f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}
