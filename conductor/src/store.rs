//! The conductor's durable store: a redb file (`store.redb` in the state directory) holding the
//! log (seq -> postcard [`ScheduledCommand`]), the band-time origin (unix microseconds, set the
//! first time the set is served) and the node registry (name -> last acknowledged seq, last
//! seen). Every write is its own committed (fsync'd) transaction: an entry is durable before
//! it is broadcast, so a `kill -9` loses nothing a node was told.
//!
//! A store that cannot be opened or read is a clear error naming the file.
//!
//! Thread: the session task (its writes are short and synchronous: one small commit per entry).

use std::path::{Path, PathBuf};

use loophole_net_proto::v1::ScheduledCommand;
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

const LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("log");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const NODES: TableDefinition<&str, &[u8]> = TableDefinition::new("nodes");
const ORIGIN: &str = "origin_unix_us";

/// What went wrong with the store; the message names the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {why}")]
pub struct StoreError {
    /// The store's file.
    pub file: PathBuf,
    /// What went wrong.
    pub why: String,
}

/// A node as the registry remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// Every entry up to this seq was acknowledged.
    pub acked: u64,
    /// When it was last heard, band time in microseconds.
    pub last_seen_us: u64,
}

/// The open store. See the module docs.
pub struct Store {
    db: Database,
    file: PathBuf,
}

impl Store {
    /// Opens (or creates) the store file `file`.
    pub fn open(file: &Path) -> Result<Store, StoreError> {
        let err = |why: String| StoreError { file: file.to_path_buf(), why };
        let db = Database::create(file).map_err(|e| err(format!("cannot open the conductor's store: {e}")))?;
        let store = Store { db, file: file.to_path_buf() };
        // Make the tables exist, so reads never meet a missing table.
        let tx = store.db.begin_write().map_err(|e| store.err(e))?;
        {
            tx.open_table(LOG).map_err(|e| store.err(e))?;
            tx.open_table(META).map_err(|e| store.err(e))?;
            tx.open_table(NODES).map_err(|e| store.err(e))?;
        }
        tx.commit().map_err(|e| store.err(e))?;
        Ok(store)
    }

    fn err(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError { file: self.file.clone(), why: e.to_string() }
    }

    /// The store's file.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// The whole log, in seq order. Refuses a log with a gap or an entry that does not decode.
    pub fn log(&self) -> Result<Vec<ScheduledCommand>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(LOG).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let seq = k.value();
            let entry: ScheduledCommand =
                postcard::from_bytes(v.value()).map_err(|e| self.err(format!("log entry {seq} is corrupt ({e})")))?;
            if entry.seq != seq || seq != out.len() as u64 + 1 {
                return Err(self.err(format!("the log is corrupt: entry {} where {} should be", seq, out.len() + 1)));
            }
            out.push(entry);
        }
        Ok(out)
    }

    /// Appends an entry and commits it durably before returning.
    pub fn append(&self, entry: &ScheduledCommand) -> Result<(), StoreError> {
        let bytes = postcard::to_allocvec(entry).map_err(|e| self.err(e))?;
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(LOG).map_err(|e| self.err(e))?;
            table.insert(entry.seq, bytes.as_slice()).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The band-time origin (unix microseconds), setting it to `now_unix_us` the first time.
    pub fn origin_or(&self, now_unix_us: u64) -> Result<u64, StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let origin = {
            let mut table = tx.open_table(META).map_err(|e| self.err(e))?;
            let existing = table.get(ORIGIN).map_err(|e| self.err(e))?.map(|v| v.value());
            match existing {
                Some(o) => o,
                None => {
                    table.insert(ORIGIN, now_unix_us).map_err(|e| self.err(e))?;
                    now_unix_us
                }
            }
        };
        tx.commit().map_err(|e| self.err(e))?;
        Ok(origin)
    }

    /// Records nodes (name, record) in one commit.
    pub fn record_nodes<'a>(&self, nodes: impl IntoIterator<Item = (&'a str, NodeRecord)>) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(NODES).map_err(|e| self.err(e))?;
            for (name, record) in nodes {
                let bytes = postcard::to_allocvec(&record).map_err(|e| self.err(e))?;
                table.insert(name, bytes.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The node registry.
    pub fn nodes(&self) -> Result<Vec<(String, NodeRecord)>, StoreError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(NODES).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            let name = k.value().to_string();
            let record = postcard::from_bytes(v.value())
                .map_err(|e| self.err(format!("registry entry '{name}' is corrupt ({e})")))?;
            out.push((name, record));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loophole_engine::control::ControlCommand;

    fn entry(seq: u64) -> ScheduledCommand {
        ScheduledCommand {
            id: seq,
            seq,
            target_beat: seq as f64 * 4.0,
            command: ControlCommand::Tempo { bpm: 100.0 + seq as f64 },
            origin: "ctl".into(),
            incarnation: 0,
            press: 0,
        }
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("loophole-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("store.redb")
    }

    #[test]
    fn the_log_origin_and_registry_survive_reopening() {
        let file = temp("reopen");
        {
            let s = Store::open(&file).unwrap();
            for seq in 1..=5 {
                s.append(&entry(seq)).unwrap();
            }
            assert_eq!(s.origin_or(1234).unwrap(), 1234);
            s.record_nodes([("keys", NodeRecord { acked: 4, last_seen_us: 99 })]).unwrap();
        }
        let s = Store::open(&file).unwrap();
        assert_eq!(s.log().unwrap(), (1..=5).map(entry).collect::<Vec<_>>());
        assert_eq!(s.origin_or(999_999).unwrap(), 1234);
        assert_eq!(s.nodes().unwrap(), vec![("keys".to_string(), NodeRecord { acked: 4, last_seen_us: 99 })]);
    }

    #[test]
    fn a_corrupt_store_is_an_error_naming_the_file() {
        let file = temp("corrupt");
        std::fs::write(&file, b"this is not a redb file at all, just some bytes".repeat(100)).unwrap();
        let e = Store::open(&file).err().expect("a corrupt file must not open").to_string();
        assert!(e.contains("store.redb"), "{e}");
        let file = temp("gap");
        let s = Store::open(&file).unwrap();
        s.append(&entry(1)).unwrap();
        s.append(&entry(3)).unwrap();
        let e = s.log().unwrap_err().to_string();
        assert!(e.contains("store.redb") && e.contains("corrupt"), "{e}");
    }
}
