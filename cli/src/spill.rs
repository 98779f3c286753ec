//! Spill files: events the buffer could not write before shutdown, kept on disk as NDJSON (canonical
//! enriched events) and replayed into the store at the next start. A file is deleted only after all of
//! its events are stored; replay uses the same dedup tokens, so a crash during replay is harmless.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use commerce_analytics::event::Event;
use commerce_analytics::store::{EventStore, dedup_token};

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

/// Replays every spill file in `dir`; returns the number of events stored. Files that cannot be stored
/// now are kept for the next start.
pub async fn replay(dir: &Path, store: &dyn EventStore) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    let mut stored = 0;
    for path in files {
        let events = match read(&path) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "unreadable spill file kept");
                continue;
            }
        };
        let mut ok = true;
        for chunk in events.chunks(10_000) {
            if let Err(e) = store.insert(chunk, &dedup_token(chunk)).await {
                tracing::error!(file = %path.display(), error = %e, "spill replay failed; file kept");
                ok = false;
                break;
            }
        }
        if ok {
            stored += events.len();
            let _ = std::fs::remove_file(&path);
        }
    }
    stored
}

fn read(path: &Path) -> std::io::Result<Vec<Event>> {
    let f = std::io::BufReader::new(std::fs::File::open(path)?);
    f.lines()
        .filter(|l| l.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(|l| serde_json::from_str(&l?).map_err(std::io::Error::other))
        .collect()
}
