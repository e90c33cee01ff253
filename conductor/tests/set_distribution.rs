//! Set distribution: a conductor serving `examples/band.toml` (a MIDI file and a WAV beside
//! it); a node fetches the set into an empty cache (three files: the session, the MIDI, the
//! WAV), the laid-out session loads with the engine, and a second node on the same cache
//! downloads nothing.

mod common;

use common::*;
use loophole_conductor::client::{Client, ClientOptions, SetLocation};
use loophole_conductor::set::SetSource;
use loophole_net_proto::v1::Role;

#[test]
fn a_set_is_fetched_once_and_loads_from_the_cache() {
    let dir = TempDir::new("setdist");
    let server = serve(SetSource::File(examples().join("band.toml")), dir.path());
    let code = server.join_code(Role::Observer).clone();
    let cache = dir.path().join("cache");

    let first = Client::connect(&code, ClientOptions::new("first")).expect("joins");
    let SetLocation::File(session) = first.fetch_set(&cache).expect("fetched") else { panic!("a file set") };
    assert_eq!(first.files_downloaded(), 3);
    assert_eq!(server.files_sent(), 3);
    assert!(session.starts_with(cache.join("sets")), "{}", session.display());
    assert_eq!(session.file_name().unwrap(), "band.toml");
    let loaded = loophole_engine::files::session::load_session(&session).unwrap_or_else(|e| panic!("{e}"));
    let original = loophole_engine::files::session::load_session(&examples().join("band.toml")).unwrap();
    assert_eq!(loaded.clips.len(), original.clips.len());
    assert_eq!(loaded.scenes.len(), original.scenes.len());
    drop(first);

    let second = Client::connect(&code, ClientOptions::new("second")).expect("joins");
    assert_eq!(second.fetch_set(&cache).expect("fetched"), SetLocation::File(session));
    assert_eq!(second.files_downloaded(), 0, "a rejoin downloads nothing");
    assert_eq!(server.files_sent(), 3);
}
