//! Writing recorded takes into the session file through `toml_edit`: one new `[[clip]]` entry
//! per take (its id, track, file and length), after the file's last table, and for a take
//! recorded into a launcher slot its id appended to that scene's `clips`. Everything else in
//! the file stays byte for byte, as [`super::save_arrangement`] keeps it; the new text must load
//! before it replaces the file. Control thread; does file I/O.

use std::path::Path;

use super::error::{SessionError, SessionErrorKind};
use super::save::{parse_for_edit, read_for_edit, replace_checked, walk_tables};

/// A take to add to a session file.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTake {
    /// The clip id (the take's name).
    pub id: String,
    /// The track's id.
    pub track: String,
    /// The take's file, as the session should name it (relative to the session's folder where
    /// it is inside it).
    pub file: String,
    /// Its length in beats.
    pub length_beats: f64,
    /// The scene whose slot it was recorded into, if any.
    pub scene: Option<String>,
}

/// Adds `takes` to the session file at `path` (see the module docs). The file is left as it was
/// when the new text would not load, or the file is read-only.
pub fn add_takes(path: &Path, takes: &[NewTake]) -> Result<(), SessionError> {
    if takes.is_empty() {
        return Ok(());
    }
    let (meta, text) = read_for_edit(path)?;
    let new_text = add_takes_text(&text, path, takes)?;
    replace_checked(path, &meta, &new_text)
}

/// The text of session file `text` with `takes` added: what [`add_takes`] writes.
pub fn add_takes_text(text: &str, file: &Path, takes: &[NewTake]) -> Result<String, SessionError> {
    use toml_edit::{ArrayOfTables, Item, Table, value};

    let (bom, mut doc) = parse_for_edit(text, file)?;
    let save_err = |m: String| SessionError::whole_file(file, SessionErrorKind::Save(m));
    let mut last = 0isize;
    walk_tables(doc.as_table(), &mut |t| last = last.max(t.position().unwrap_or(0)));
    for (k, take) in takes.iter().enumerate() {
        let mut t = Table::new();
        t.set_position(Some(last + 1 + k as isize));
        t.decor_mut().set_prefix("\n# recorded take\n");
        t.insert("id", value(take.id.as_str()));
        t.insert("track", value(take.track.as_str()));
        t.insert("file", value(take.file.as_str()));
        t.insert("length_beats", value(take.length_beats));
        match doc.get_mut("clip") {
            None => {
                let mut a = ArrayOfTables::new();
                a.push(t);
                doc.insert("clip", Item::ArrayOfTables(a));
            }
            Some(Item::ArrayOfTables(a)) => a.push(t),
            Some(_) => return Err(save_err("the file's clips are not written as [[clip]] entries".into())),
        }
        let Some(scene) = &take.scene else { continue };
        let Some(Item::ArrayOfTables(scenes)) = doc.get_mut("scene") else {
            return Err(save_err(format!(
                "take '{}' belongs to scene '{scene}', which the file does not hold",
                take.id
            )));
        };
        let Some(entry) =
            scenes.iter_mut().find(|s| s.get("id").and_then(|v| v.as_str()).map(str::trim) == Some(scene))
        else {
            return Err(save_err(format!(
                "take '{}' belongs to scene '{scene}', which the file does not hold",
                take.id
            )));
        };
        match entry.get_mut("clips") {
            None => {
                entry.insert("clips", value(toml_edit::Array::from_iter([take.id.as_str()])));
            }
            Some(item) => match item.as_array_mut() {
                Some(a) => {
                    let spaced = !a.is_empty();
                    a.push(take.id.as_str());
                    if spaced && let Some(v) = a.get_mut(a.len() - 1) {
                        v.decor_mut().set_prefix(" ");
                    }
                }
                None => return Err(save_err(format!("scene '{scene}': clips is not a list"))),
            },
        }
    }
    Ok(format!("{bom}{doc}"))
}
