//! A node's set cache: files kept by content (`<cache>/files/<sha256 hex>`), verified when they
//! arrive, and each set laid out as `<cache>/sets/<session sha256 hex>/<relative paths>` so the
//! session file's relative paths resolve. A file already in the cache is never fetched again.
//!
//! Thread: the client's driver thread (blocking file I/O, small files, inside
//! `spawn_blocking`) and the caller of [`crate::client::Client::fetch_set`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use loophole_net_proto::v1::FileRef;
use sha2::{Digest, Sha256};

use crate::join::hex;
use crate::set::relative_path;

/// Where the file with hash `sha256` is kept.
pub fn file_path(cache: &Path, sha256: &[u8; 32]) -> PathBuf {
    cache.join("files").join(hex(sha256))
}

/// Whether the cache holds this file (present with its size; contents were verified when it
/// was stored).
pub fn has(cache: &Path, file: &FileRef) -> bool {
    fs::metadata(file_path(cache, &file.sha256)).is_ok_and(|m| m.is_file() && m.len() == file.size)
}

/// Stores received bytes under their hash, after checking them against `file`.
pub fn store(cache: &Path, file: &FileRef, bytes: &[u8]) -> Result<(), String> {
    let got: [u8; 32] = Sha256::digest(bytes).into();
    if got != file.sha256 || bytes.len() as u64 != file.size {
        return Err(format!(
            "file \"{}\" arrived damaged (sha256 {} and {} bytes, expected {} and {} bytes)",
            file.path,
            hex(&got),
            bytes.len(),
            hex(&file.sha256),
            file.size
        ));
    }
    let dir = cache.join("files");
    let io = |e: io::Error| format!("{}: {e}", dir.display());
    fs::create_dir_all(&dir).map_err(io)?;
    let final_path = file_path(cache, &file.sha256);
    let tmp = final_path.with_extension("part");
    fs::write(&tmp, bytes).map_err(io)?;
    fs::rename(&tmp, &final_path).map_err(io)
}

/// Lays a set out from the cache and returns the session file's path there.
pub fn lay_out(cache: &Path, session: &FileRef, files: &[FileRef]) -> Result<PathBuf, String> {
    let root = cache.join("sets").join(hex(&session.sha256));
    let mut session_path = None;
    for (i, f) in std::iter::once(session).chain(files).enumerate() {
        let rel =
            relative_path(&f.path).map_err(|why| format!("the conductor offered file \"{}\", which {why}", f.path))?;
        let to = root.join(rel);
        let from = file_path(cache, &f.sha256);
        let io = |e: io::Error| format!("{}: {e}", to.display());
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let same = fs::metadata(&to).is_ok_and(|m| m.len() == f.size)
            && fs::read(&to).is_ok_and(|b| {
                let h: [u8; 32] = Sha256::digest(&b).into();
                h == f.sha256
            });
        if !same {
            let _ = fs::remove_file(&to);
            if fs::hard_link(&from, &to).is_err() {
                fs::copy(&from, &to).map_err(io)?;
            }
        }
        if i == 0 {
            session_path = Some(to);
        }
    }
    session_path.ok_or_else(|| "no session file".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn damaged_files_are_refused_and_sets_lay_out_by_relative_path() {
        let cache = std::env::temp_dir().join(format!("loophole-cache-{}", std::process::id()));
        let _ = fs::remove_dir_all(&cache);
        let f = |path: &str, bytes: &[u8]| FileRef {
            path: path.into(),
            sha256: Sha256::digest(bytes).into(),
            size: bytes.len() as u64,
        };
        let session = f("set.toml", b"[session]\n");
        let audio = f("audio/a.wav", b"RIFF....");
        assert!(!has(&cache, &audio));
        let e = store(&cache, &audio, b"RIFF...!").unwrap_err();
        assert!(e.contains("damaged"), "{e}");
        store(&cache, &session, b"[session]\n").unwrap();
        store(&cache, &audio, b"RIFF....").unwrap();
        assert!(has(&cache, &audio));
        let at = lay_out(&cache, &session, std::slice::from_ref(&audio)).unwrap();
        assert_eq!(fs::read(at.parent().unwrap().join("audio/a.wav")).unwrap(), b"RIFF....");
        let evil = f("../../x", b"RIFF....");
        assert!(lay_out(&cache, &session, &[evil]).is_err());
        let _ = fs::remove_dir_all(&cache);
    }
}
