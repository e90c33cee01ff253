//! The set a conductor serves: the session it sequences against, and what nodes fetch to load
//! the same one. For a session file, the offer names the file and every audio and MIDI file it
//! references (found with the engine's loader, `files::session::referenced_files`), each by
//! path relative to the session file's folder, SHA-256 and size; `--demo` offers the built-in
//! demo, which has no files.
//!
//! Files are read when the set is loaded (to hash them) and again when a node fetches one. A set
//! that changes on disk while it is served is not noticed (a new version at a bar line is not
//! built yet): restart the conductor.
//!
//! Thread: the conductor's startup (file I/O); the lookup is used by connection tasks.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use loophole_engine::model::Session;
use loophole_net_proto::v1::{FileRef, SetKind};
use sha2::{Digest, Sha256};

/// What to serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetSource {
    /// The built-in demo set.
    Demo,
    /// A session file.
    File(PathBuf),
}

/// A loaded set. See the module docs.
pub struct ServedSet {
    /// The session the conductor sequences against.
    pub session: Arc<Session>,
    /// The offer sent to every node after its welcome.
    pub offer: SetKind,
    files: HashMap<[u8; 32], PathBuf>,
}

impl ServedSet {
    /// Loads and hashes the set.
    pub fn load(source: &SetSource) -> anyhow::Result<ServedSet> {
        match source {
            SetSource::Demo => Ok(ServedSet {
                session: Arc::new(loophole_engine::demo::session()),
                offer: SetKind::Demo,
                files: HashMap::new(),
            }),
            SetSource::File(path) => {
                let session = loophole_engine::files::session::load_session(path)?;
                let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
                let names = loophole_engine::files::session::referenced_files(&text, path)?;
                let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
                let mut files = HashMap::new();
                let file_name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .with_context(|| format!("{}: the session file's name is not UTF-8", path.display()))?;
                let session_ref = hash_file(path, file_name.to_string())?;
                files.insert(session_ref.sha256, path.clone());
                let mut refs = Vec::new();
                for name in names {
                    let rel = relative_path(&name).map_err(|why| {
                        anyhow::anyhow!("{}: the set cannot be served: file \"{name}\" {why}", path.display())
                    })?;
                    let full = dir.join(&rel);
                    let r = hash_file(&full, name.replace('\\', "/"))?;
                    files.insert(r.sha256, full);
                    refs.push(r);
                }
                Ok(ServedSet {
                    session: Arc::new(session),
                    offer: SetKind::Files { session: session_ref, files: refs },
                    files,
                })
            }
        }
    }

    /// Where the file with this hash is, if the set has it.
    pub fn file(&self, sha256: &[u8; 32]) -> Option<&Path> {
        self.files.get(sha256).map(PathBuf::as_path)
    }
}

fn hash_file(path: &Path, name: String) -> anyhow::Result<FileRef> {
    let bytes = std::fs::read(path).with_context(|| format!("{}: cannot read a file of the set", path.display()))?;
    Ok(FileRef { path: name, sha256: Sha256::digest(&bytes).into(), size: bytes.len() as u64 })
}

/// `name` as a path inside a set's folder: relative, with no `..`, not empty. Both ends check
/// it (a node never writes outside its cache, whatever an offer says).
pub fn relative_path(name: &str) -> Result<PathBuf, &'static str> {
    let path = Path::new(name);
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err("is outside the session file's folder (has `..`)"),
            Component::RootDir | Component::Prefix(_) => return Err("is an absolute path"),
        }
    }
    if out.as_os_str().is_empty() { Err("is empty") } else { Ok(out) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_set_are_refused() {
        assert_eq!(relative_path("audio/pad.wav"), Ok(PathBuf::from("audio/pad.wav")));
        assert_eq!(relative_path("./a.mid"), Ok(PathBuf::from("a.mid")));
        assert!(relative_path("../secret").is_err());
        assert!(relative_path("/etc/passwd").is_err());
        assert!(relative_path("a/../../b").is_err());
        assert!(relative_path("").is_err());
    }

    #[test]
    fn the_band_example_offers_its_session_audio_and_midi() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/band.toml");
        let set = ServedSet::load(&SetSource::File(path)).unwrap();
        let SetKind::Files { session, files } = &set.offer else { panic!("a file set") };
        assert_eq!(session.path, "band.toml");
        let names: Vec<_> = files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, vec!["midi/bassline.mid", "audio/pad-am.wav"]);
        for f in files {
            assert!(set.file(&f.sha256).is_some());
            assert!(f.size > 0);
        }
    }
}
