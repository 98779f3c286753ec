//! The durable buffer's write-ahead log: accepted events are on disk, fsynced, before the API answers 202.
//!
//! Contract:
//! - [`Wal::append`] writes the events as NDJSON (the canonical enriched events, one per line) to the
//!   current segment file and returns once they are fsynced, with the segment's number. Appends that
//!   arrive while a write is in progress are grouped into the next write and share one `fsync` (group
//!   commit), so many small requests cost one disk flush per group, not one each.
//! - [`Wal::release`] is called once those events are stored. A segment file is deleted when it is no
//!   longer the one being appended to and every event in it was released; so the files on disk always
//!   hold every acknowledged event that is not yet stored (and possibly some that are).
//! - After a crash, [`replay`] reads every segment (and spill file) left in the folder and stores it again:
//!   the store's exactly-once lookup drops what already landed, so a replay never counts an event twice.
//!   A torn line (the process died in the middle of a write) was never acknowledged and is skipped.
//! - Segments rotate at [`SEGMENT_BYTES`]; a write that fails (disk full) answers an error for every
//!   append in its group (the API answers 503, nothing acknowledged) and the next write starts a new
//!   segment, so a partial line is never followed by acknowledged ones.
//!
//! The disk work runs on one dedicated thread, off the async runtime.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

use tokio::sync::oneshot;

use crate::event::Event;
use crate::store::{EventStore, dedup_token};

/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;

/// At most this many appends share one write and `fsync`.
const MAX_GROUP: usize = 4096;

/// The write-ahead log of one buffer; cheap to clone.
#[derive(Debug, Clone)]
pub struct Wal {
    dir: PathBuf,
    tx: mpsc::Sender<Append>,
    segments: Arc<Mutex<Segments>>,
}

#[derive(Debug)]
struct Append {
    lines: Vec<u8>,
    events: usize,
    reply: oneshot::Sender<std::io::Result<u64>>,
}

/// Which segments hold events not yet released.
#[derive(Debug, Default)]
struct Segments {
    /// The segment being appended to.
    current: u64,
    /// Events appended and not yet released, per segment.
    outstanding: BTreeMap<u64, usize>,
}

/// What [`Wal::stats`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalStats {
    /// Segment files on disk.
    pub segments: usize,
    /// Events in them not yet released.
    pub outstanding: usize,
}

impl Wal {
    /// Opens the log in `dir` (created if missing). Segments already there (from a crash) are left alone:
    /// new ones are numbered after them, and [`replay`] deals with the old ones.
    pub fn open(dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let first = segment_files(dir)?
            .iter()
            .filter_map(|p| segment_number(p))
            .max()
            .map_or(1, |n| n + 1);
        let segments = Arc::new(Mutex::new(Segments {
            current: first,
            outstanding: BTreeMap::new(),
        }));
        let (tx, rx) = mpsc::channel::<Append>();
        let writer = Writer {
            dir: dir.to_path_buf(),
            segments: segments.clone(),
            file: None,
            number: first,
            used: false,
            bytes: 0,
        };
        std::thread::Builder::new()
            .name("analytics-wal".into())
            .spawn(move || writer.run(&rx))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            tx,
            segments,
        })
    }

    /// Writes `events` and waits for the fsync; returns the segment that holds them.
    pub async fn append(&self, events: &[Event]) -> std::io::Result<u64> {
        let mut lines = Vec::with_capacity(events.len() * 512);
        for e in events {
            serde_json::to_writer(&mut lines, e)?;
            lines.push(b'\n');
        }
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Append {
                lines,
                events: events.len(),
                reply,
            })
            .map_err(|_| std::io::Error::other("the write-ahead log is closed"))?;
        answer
            .await
            .map_err(|_| std::io::Error::other("the write-ahead log stopped"))?
    }

    /// `events` of `segment` are stored; deletes the segment when nothing in it is left to store.
    pub fn release(&self, segment: u64, events: usize) {
        let mut segs = self.lock();
        let Some(left) = segs.outstanding.get_mut(&segment) else {
            return;
        };
        *left = left.saturating_sub(events);
        if *left == 0 && segment != segs.current {
            segs.outstanding.remove(&segment);
            remove(&segment_path(&self.dir, segment));
        }
    }

    /// Called at a clean shutdown after the buffer's last flush: deletes the current segment when every
    /// event in it is stored (otherwise it stays for the next start's replay).
    pub fn close(&self) {
        let mut segs = self.lock();
        let current = segs.current;
        if segs.outstanding.get(&current).copied().unwrap_or(0) == 0 {
            segs.outstanding.remove(&current);
            // The next append (none is expected) would start a new segment.
            segs.current += 1;
            remove(&segment_path(&self.dir, current));
        }
    }

    pub fn stats(&self) -> WalStats {
        let segs = self.lock();
        WalStats {
            segments: segment_files(&self.dir).map_or(0, |f| f.len()),
            outstanding: segs.outstanding.values().sum(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Segments> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(file = %path.display(), error = %e, "could not delete a stored WAL segment");
    }
}

/// The thread that owns the segment file.
struct Writer {
    dir: PathBuf,
    segments: Arc<Mutex<Segments>>,
    file: Option<File>,
    number: u64,
    /// Whether segment `number` was ever opened (then the next one gets a new number).
    used: bool,
    bytes: u64,
}

impl Writer {
    fn run(mut self, rx: &mpsc::Receiver<Append>) {
        while let Ok(first) = rx.recv() {
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(more) => group.push(more),
                    Err(_) => break,
                }
            }
            let events: usize = group.iter().map(|a| a.events).sum();
            match self.write(&group) {
                Ok(number) => {
                    for a in group {
                        let _ = a.reply.send(Ok(number));
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, events, "write-ahead log write failed; answering 503");
                    // Never append after a possibly partial line: the next write starts a new segment.
                    self.file = None;
                    for a in group {
                        let _ = a
                            .reply
                            .send(Err(std::io::Error::new(e.kind(), e.to_string())));
                    }
                }
            }
        }
    }

    fn write(&mut self, group: &[Append]) -> std::io::Result<u64> {
        let closed = self.lock().current != self.number;
        if self.file.is_none() || self.bytes >= SEGMENT_BYTES || closed {
            self.rotate()?;
        }
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("no WAL segment open"));
        };
        let mut bytes = 0u64;
        for a in group {
            file.write_all(&a.lines)?;
            bytes += a.lines.len() as u64;
        }
        file.sync_data()?;
        self.bytes += bytes;
        let events: usize = group.iter().map(|a| a.events).sum();
        *self.lock().outstanding.entry(self.number).or_insert(0) += events;
        Ok(self.number)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Segments> {
        self.segments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts the next segment (a segment once opened is never appended to again after a rotation or a
    /// failed write); the one before is deleted if everything in it is already stored.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.file = None;
        let previous = self.used.then_some(self.number);
        let next = (self.number + u64::from(self.used)).max(self.lock().current);
        let path = segment_path(&self.dir, next);
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        // The new file's directory entry must survive a crash too.
        File::open(&self.dir)?.sync_all()?;
        self.file = Some(file);
        self.number = next;
        self.used = true;
        self.bytes = 0;
        let mut segs = self.lock();
        segs.current = next;
        if let Some(prev) = previous
            && segs.outstanding.get(&prev).copied().unwrap_or(0) == 0
        {
            segs.outstanding.remove(&prev);
            remove(&segment_path(&self.dir, prev));
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("wal-{number:012}.ndjson"))
}

fn segment_number(path: &Path) -> Option<u64> {
    path.file_name()?
        .to_str()?
        .strip_prefix("wal-")?
        .strip_suffix(".ndjson")?
        .parse()
        .ok()
}

fn segment_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "ndjson"))
        .collect();
    files.sort();
    Ok(files)
}

/// What [`replay`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replayed {
    pub files: usize,
    pub events: usize,
    /// Lines that were not an event (a write torn by a crash; never acknowledged).
    pub torn_lines: usize,
}

/// Stores every event of every `*.ndjson` file in `dir` (WAL segments and spill files) and deletes each
/// file once all of it is stored; a file that cannot be stored now is kept for the next start.
pub async fn replay(dir: &Path, store: &dyn EventStore) -> Replayed {
    let mut done = Replayed::default();
    let Ok(files) = segment_files(dir) else {
        return done;
    };
    for path in files {
        let (events, torn) = match read(&path) {
            Ok(read) => read,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "unreadable buffer file kept");
                continue;
            }
        };
        if torn > 0 {
            tracing::warn!(file = %path.display(), lines = torn,
                "skipped lines torn by a crash (they were never acknowledged)");
        }
        let mut stored = true;
        for chunk in events.chunks(10_000) {
            if let Err(e) = store.insert(chunk, &dedup_token(chunk)).await {
                tracing::error!(file = %path.display(), error = %e, "replay failed; file kept");
                stored = false;
                break;
            }
        }
        if stored {
            done.files += 1;
            done.events += events.len();
            done.torn_lines += torn;
            remove(&path);
        }
    }
    done
}

/// The events of one file, and how many lines were not events.
fn read(path: &Path) -> std::io::Result<(Vec<Event>, usize)> {
    let f = std::io::BufReader::new(File::open(path)?);
    let mut events = Vec::new();
    let mut torn = 0;
    for line in f.split(b'\n') {
        let line = line?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<Event>(&line) {
            Ok(e) => events.push(e),
            Err(_) => torn += 1,
        }
    }
    Ok((events, torn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn events(prefix: &str, n: usize) -> Vec<Event> {
        crate::event::test_page_views(prefix, n)
    }

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().expect("temp dir")
    }

    #[tokio::test]
    async fn appended_events_are_on_disk_until_released() {
        let d = dir();
        let wal = Wal::open(d.path()).expect("open");
        let seg = wal.append(&events("a", 3)).await.expect("append");
        assert_eq!(
            wal.stats(),
            WalStats {
                segments: 1,
                outstanding: 3
            }
        );
        let store = MemoryStore::new();
        // A crash now: a new process replays the folder and finds all three.
        let replayed = replay(d.path(), &store).await;
        assert_eq!(replayed.events, 3);
        assert_eq!(store.events().len(), 3);
        wal.release(seg, 3);
        wal.close();
        assert_eq!(
            wal.stats().segments,
            0,
            "nothing left to store, nothing on disk"
        );
    }

    #[tokio::test]
    async fn concurrent_appends_share_fsyncs_and_all_land() {
        let d = dir();
        let wal = Wal::open(d.path()).expect("open");
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200 {
            let wal = wal.clone();
            tasks.spawn(async move { wal.append(&events(&format!("c{i}_"), 5)).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("joined").expect("appended");
        }
        let store = MemoryStore::new();
        assert_eq!(replay(d.path(), &store).await.events, 1000);
    }

    #[tokio::test]
    async fn a_torn_last_line_is_skipped_and_the_rest_replayed() {
        let d = dir();
        let wal = Wal::open(d.path()).expect("open");
        wal.append(&events("t", 2)).await.expect("append");
        let path = segment_files(d.path()).expect("files")[0].clone();
        let mut f = OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(br#"{"id":"half-writ"#).expect("write");
        let store = MemoryStore::new();
        let replayed = replay(d.path(), &store).await;
        assert_eq!((replayed.events, replayed.torn_lines), (2, 1));
        assert!(segment_files(d.path()).expect("files").is_empty());
    }

    #[tokio::test]
    async fn a_file_the_store_refuses_is_kept_for_the_next_start() {
        let d = dir();
        let wal = Wal::open(d.path()).expect("open");
        wal.append(&events("k", 2)).await.expect("append");
        let store = MemoryStore::new();
        store.fail_next(1);
        assert_eq!(replay(d.path(), &store).await.events, 0);
        assert_eq!(segment_files(d.path()).expect("files").len(), 1);
        assert_eq!(replay(d.path(), &store).await.events, 2);
    }

    #[tokio::test]
    async fn a_reopened_log_numbers_its_segments_after_the_old_ones() {
        let d = dir();
        let first = Wal::open(d.path()).expect("open");
        let old = first.append(&events("o", 1)).await.expect("append");
        let second = Wal::open(d.path()).expect("reopen");
        let new = second.append(&events("n", 1)).await.expect("append");
        assert!(new > old, "{new} > {old}");
        assert_eq!(segment_files(d.path()).expect("files").len(), 2);
    }
}
