//! Writing a session's arrangement back into its file through `toml_edit`, keeping everything
//! else in the file byte for byte. Control thread; does file I/O.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{SessionError, SessionErrorKind};
use super::{LoadOptions, parse_session_with};
use crate::files::diagnostics::line_col;
use crate::model::{ClipContent, Session};

/// Writes `session`'s arrangement (its placements and tempo changes) into the session file at
/// `path`, replacing the file's `[arrangement]` section and keeping everything else byte for byte,
/// comments included. The new section goes where the old one was (a comment just above the old
/// section stays above it), or at the end of the file if it had none; comments inside the old
/// section are not kept.
///
/// A placed clip the file does not define (a duplicate made by [`Session::place_clip`]) is
/// added as a new `[[clip]]` entry after the file's clips: a copy of its original's entry with
/// the new id and lane. Any other clip the file does not define is an error, and the file is
/// left as it was.
///
/// The new text is loaded with the same loader first (audio files only probed, not decoded): if
/// it would not load (two tempo changes on one beat, a placement past the last beat a session
/// may use), the error says why ([`SessionErrorKind::WouldNotLoad`]) and the file is left as it
/// was. A read-only file (no write permission bit set, or one this process may not write) is
/// refused as editors refuse it ([`SessionErrorKind::ReadOnly`]). The file is replaced atomically
/// (written beside it, then renamed) with its permissions and, where the process may set it, its
/// owner; where it may not (a file of another user that this one may write), it is rewritten in
/// place so that its owner stays.
///
/// Thread: control. Not realtime-safe.
pub fn save_arrangement(path: &Path, session: &Session) -> Result<(), SessionError> {
    let (meta, text) = read_for_edit(path)?;
    let new_text = replace_arrangement(&text, path, session)?;
    replace_checked(path, &meta, &new_text)
}

/// Reads the session file at `path` for an edit: its metadata and its text. A read-only file
/// is refused ([`SessionErrorKind::ReadOnly`]).
pub(super) fn read_for_edit(path: &Path) -> Result<(std::fs::Metadata, String), SessionError> {
    let meta = std::fs::metadata(path).map_err(|e| SessionError::whole_file(path, SessionErrorKind::Io(e)))?;
    if meta.permissions().readonly() || std::fs::OpenOptions::new().append(true).open(path).is_err() {
        return Err(SessionError::whole_file(path, SessionErrorKind::ReadOnly));
    }
    let bytes = std::fs::read(path).map_err(|e| SessionError::whole_file(path, SessionErrorKind::Io(e)))?;
    let text = String::from_utf8(bytes).map_err(|_| {
        SessionError::whole_file(
            path,
            SessionErrorKind::Syntax { message: "the file is not UTF-8 text (save it as UTF-8)".into() },
        )
    })?;
    Ok((meta, text))
}

/// Replaces the session file at `path` (whose metadata was `meta`) with `new_text`, once the
/// loader accepts it (audio files only probed): atomically, keeping its permissions and owner.
pub(super) fn replace_checked(path: &Path, meta: &std::fs::Metadata, new_text: &str) -> Result<(), SessionError> {
    let probe = LoadOptions { memory_budget_mb: Some(0.0), ..LoadOptions::default() };
    if let Err(e) = parse_session_with(new_text, path, probe) {
        return Err(SessionError::whole_file(path, SessionErrorKind::WouldNotLoad(e.to_string())));
    }
    let write = |e| SessionError::whole_file(path, SessionErrorKind::Write(e));
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".saving-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let replaced = (|| {
        std::fs::write(&tmp, new_text)?;
        std::fs::set_permissions(&tmp, meta.permissions())?;
        if !keep_owner(&tmp, meta) {
            // Not ours to re-own, but ours to write: rewrite it in place, owner and mode kept.
            std::fs::remove_file(&tmp)?;
            return std::fs::write(path, new_text);
        }
        std::fs::rename(&tmp, path)
    })();
    replaced.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        write(e)
    })
}

/// Gives `file` (just written by this process) the owner and group in `meta`; false if the
/// process may not (the original belongs to another user).
#[cfg(unix)]
fn keep_owner(file: &Path, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(now) = std::fs::metadata(file) else { return false };
    (now.uid(), now.gid()) == (meta.uid(), meta.gid())
        || std::os::unix::fs::chown(file, Some(meta.uid()), Some(meta.gid())).is_ok()
}

#[cfg(not(unix))]
fn keep_owner(_file: &Path, _meta: &std::fs::Metadata) -> bool {
    true
}

/// The text of session file `text` with its arrangement replaced by `session`'s: what
/// [`save_arrangement`] writes. `file` names the file in error messages.
pub fn replace_arrangement(text: &str, file: &Path, session: &Session) -> Result<String, SessionError> {
    use toml_edit::{ArrayOfTables, Item, Table};

    let (bom, mut doc) = parse_for_edit(text, file)?;
    let save_err = |m: String| SessionError::whole_file(file, SessionErrorKind::Save(m));

    // Where the old section was, and the comment above it.
    let mut last = 0isize;
    walk_tables(doc.as_table(), &mut |t| last = last.max(t.position().unwrap_or(0)));
    let (position, prefix) = match doc.get("arrangement") {
        Some(Item::Table(old)) => {
            let mut first: Option<(isize, String)> = None;
            walk_tables(old, &mut |t| {
                if let Some(p) = t.position()
                    && !t.is_implicit()
                    && first.as_ref().is_none_or(|(q, _)| p < *q)
                {
                    let prefix = t.decor().prefix().and_then(|r| r.as_str()).unwrap_or("\n").to_string();
                    first = Some((p, prefix));
                }
            });
            first.unwrap_or((last + 1, "\n".into()))
        }
        _ => (last + 1, "\n".into()),
    };

    // Clips placed on the arrangement that the file does not define: copies of clips it does.
    let file_clips: Vec<String> = match doc.get("clip") {
        None => Vec::new(),
        Some(Item::ArrayOfTables(a)) => {
            a.iter().filter_map(|t| t.get("id").and_then(|v| v.as_str()).map(|s| s.trim().to_string())).collect()
        }
        Some(_) => return Err(save_err("the file's clips are not written as [[clip]] entries".into())),
    };
    let mut added: Vec<Table> = Vec::new();
    for p in &session.arrangement.clips {
        let clip = session.clips.get(p.clip.index()).ok_or_else(|| save_err("a placement names no clip".into()))?;
        if file_clips.contains(&clip.id) || added.iter().any(|t| t.get("id").and_then(|v| v.as_str()) == Some(&clip.id))
        {
            continue;
        }
        let same = |a: &ClipContent, b: &ClipContent| match (a, b) {
            (ClipContent::Audio(x), ClipContent::Audio(y)) => Arc::ptr_eq(x, y),
            (ClipContent::Midi(x), ClipContent::Midi(y)) => Arc::ptr_eq(x, y),
            _ => false,
        };
        let original = session
            .clips
            .iter()
            .filter(|o| o.id != clip.id && file_clips.contains(&o.id) && same(&o.content, &clip.content))
            .map(|o| o.id.clone())
            .next()
            .ok_or_else(|| {
                save_err(format!("clip '{}' is not in the session file and is not a copy of a clip that is", clip.id))
            })?;
        let mut copy = match doc.get("clip") {
            Some(Item::ArrayOfTables(entries)) => entries
                .iter()
                .find(|t| t.get("id").and_then(|v| v.as_str()).map(str::trim) == Some(original.as_str()))
                .cloned(),
            _ => None,
        }
        .ok_or_else(|| save_err(format!("clip '{original}' is not in the session file")))?;
        walk_tables_mut(&mut copy, &mut |t| {
            t.set_position(None);
            t.decor_mut().clear();
        });
        copy.insert("id", toml_edit::value(clip.id.as_str()));
        let track = &session.tracks.get(clip.track.index()).ok_or_else(|| save_err("a clip has no track".into()))?.id;
        copy.insert("track", toml_edit::value(track.as_str()));
        if (clip.length.0 - session.clips.iter().find(|o| o.id == original).map_or(0.0, |o| o.length.0)).abs() > 0.0 {
            copy.insert("length_beats", number(clip.length.0));
        }
        added.push(copy);
    }
    if !added.is_empty() {
        let Some(Item::ArrayOfTables(entries)) = doc.get_mut("clip") else {
            return Err(save_err("the file defines no [[clip]] entries to copy".into()));
        };
        for t in added {
            entries.push(t);
        }
    }

    // A clip moved onto the arrangement ([`Session::place_clip`]) has left the launcher: it goes
    // from the scenes that listed it, and its entry gets the lane it moved to. Nothing else in
    // the scenes or clips changes.
    if let Some(Item::ArrayOfTables(scenes)) = doc.get_mut("scene") {
        for t in scenes.iter_mut() {
            let Some(scene) = t.get("id").and_then(|v| v.as_str()).and_then(|id| session.scene_by_name(id.trim()))
            else {
                continue;
            };
            let keep: Vec<&str> = session.scene(scene).clips.iter().map(|c| session.clip(*c).id.as_str()).collect();
            let placed = |id: &str| session.arrangement.clips.iter().any(|p| session.clip(p.clip).id == id);
            if let Some(list) = t.get_mut("clips").and_then(|v| v.as_array_mut()) {
                list.retain(|v| v.as_str().is_none_or(|id| keep.contains(&id.trim()) || !placed(id.trim())));
            }
        }
    }
    if let Some(Item::ArrayOfTables(entries)) = doc.get_mut("clip") {
        for t in entries.iter_mut() {
            let Some(clip) = t.get("id").and_then(|v| v.as_str()).and_then(|id| session.clip_by_name(id.trim())) else {
                continue;
            };
            let on_arrangement = session.arrangement.clips.iter().any(|p| p.clip == clip);
            let lane = &session.track(session.clip(clip).track).id;
            if on_arrangement && t.get("track").and_then(|v| v.as_str()).map(str::trim) != Some(lane.as_str()) {
                t.insert("track", toml_edit::value(lane.as_str()));
            }
        }
    }

    // The new section.
    doc.remove("arrangement");
    let a = &session.arrangement;
    if !a.clips.is_empty() || !a.tempo.is_empty() {
        let mut section = Table::new();
        section.set_implicit(true);
        section.set_position(Some(position));
        let mut first = true;
        let mut entry = |t: &mut Table| {
            t.set_position(Some(position));
            t.decor_mut().set_prefix(if std::mem::take(&mut first) { prefix.as_str() } else { "\n" });
        };
        let mut clips = ArrayOfTables::new();
        for p in &a.clips {
            let (Some(clip), Some(track)) = (session.clips.get(p.clip.index()), session.tracks.get(p.track.index()))
            else {
                return Err(save_err("a placement names a clip or lane that does not exist".into()));
            };
            let mut t = Table::new();
            entry(&mut t);
            t.insert("track", toml_edit::value(track.id.as_str()));
            t.insert("clip", toml_edit::value(clip.id.as_str()));
            t.insert("start", number(p.start.0));
            t.insert("length", number(p.length.0));
            if p.offset.0 != 0.0 {
                t.insert("offset", number(p.offset.0));
            }
            clips.push(t);
        }
        let mut changes = ArrayOfTables::new();
        for c in &a.tempo {
            let mut t = Table::new();
            entry(&mut t);
            t.insert("beat", number(c.beat.0));
            if let Some(tempo) = c.tempo {
                t.insert("tempo", number(tempo.0));
            }
            if let Some(b) = c.beats_per_bar {
                t.insert("beats_per_bar", number(b));
            }
            changes.push(t);
        }
        if !clips.is_empty() {
            section.insert("clip", Item::ArrayOfTables(clips));
        }
        if !changes.is_empty() {
            section.insert("tempo_change", Item::ArrayOfTables(changes));
        }
        doc.insert("arrangement", Item::Table(section));
    }
    Ok(format!("{bom}{doc}"))
}

/// A number as the session format writes it: an integer when it is one, else a decimal.
fn number(x: f64) -> toml_edit::Item {
    if x.fract() == 0.0 && x.abs() < 1e15 { toml_edit::value(x as i64) } else { toml_edit::value(x) }
}

/// Calls `f` on `table` and every table nested in it (standard tables and arrays of tables).
/// Session text parsed for an edit that keeps it byte for byte: its byte-order mark (kept
/// aside, toml_edit does not take it) and the document; a syntax error with its line and column.
pub(super) fn parse_for_edit<'a>(
    text: &'a str,
    file: &Path,
) -> Result<(&'a str, toml_edit::DocumentMut), SessionError> {
    let (bom, body) = match text.strip_prefix('\u{feff}') {
        Some(rest) => ("\u{feff}", rest),
        None => ("", text),
    };
    let doc = body.parse().map_err(|e: toml_edit::TomlError| {
        let kind = SessionErrorKind::Syntax { message: e.message().trim().to_string() };
        match e.span() {
            Some(span) => {
                let (line, column) = line_col(body, span.start);
                SessionError { file: file.to_path_buf(), line: Some(line), column: Some(column), kind: Box::new(kind) }
            }
            None => SessionError::whole_file(file, kind),
        }
    })?;
    Ok((bom, doc))
}

/// Calls `f` on `table` and every table below it, in document order.
pub(super) fn walk_tables(table: &toml_edit::Table, f: &mut impl FnMut(&toml_edit::Table)) {
    f(table);
    for (_, item) in table.iter() {
        match item {
            toml_edit::Item::Table(t) => walk_tables(t, f),
            toml_edit::Item::ArrayOfTables(a) => a.iter().for_each(|t| walk_tables(t, f)),
            _ => {}
        }
    }
}

/// [`walk_tables`], mutably.
fn walk_tables_mut(table: &mut toml_edit::Table, f: &mut impl FnMut(&mut toml_edit::Table)) {
    f(table);
    for (_, item) in table.iter_mut() {
        match item {
            toml_edit::Item::Table(t) => walk_tables_mut(t, f),
            toml_edit::Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| walk_tables_mut(t, f)),
            _ => {}
        }
    }
}
