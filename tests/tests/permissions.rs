//! The files `braid serve` creates are its user's only, whatever the umask it was started with:
//! the data folder, the lake, the profile stores (one umask for the process, so the demo write
//! key and exports too).

#![cfg(unix)]
#![allow(clippy::unwrap_used, reason = "test code")]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use braid_tests::Server;
use nix::sys::stat::{Mode, umask};

/// Every file and folder under `dir`, with its mode bits.
fn modes(dir: &Path, out: &mut Vec<(String, u32)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let meta = entry.metadata().unwrap();
        out.push((
            entry.path().display().to_string(),
            meta.permissions().mode() & 0o777,
        ));
        if meta.is_dir() {
            modes(&entry.path(), out);
        }
    }
}

#[test]
fn what_serve_writes_is_the_owners_only() {
    // A shell's usual umask, which would make new files world-readable.
    umask(Mode::from_bits_truncate(0o022));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Server::start_with(data.clone(), dir.path().join("braid.log"), &[]);
    let reply = server.post(
        "/v1/batch",
        br#"{"batch": [{"type": "identify", "userId": "u1", "traits": {"email": "a@b.example"}}]}"#,
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    braid_tests::wait_unified(&data);
    assert!(server.terminate());
    let mut found = vec![(
        data.display().to_string(),
        std::fs::metadata(&data).unwrap().permissions().mode() & 0o777,
    )];
    modes(&data, &mut found);
    assert!(found.iter().any(|(path, _)| path.contains("/raw/")));
    assert!(found.iter().any(|(path, _)| path.contains("/profiles/")));
    let open: Vec<&(String, u32)> = found.iter().filter(|(_, mode)| mode & 0o077 != 0).collect();
    assert!(open.is_empty(), "readable by others: {open:?}");
}
