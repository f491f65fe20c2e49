//! Unit tests of the durability model, without FUSE.

use super::*;

fn meta() -> Meta {
    Meta::new(0o644, 0, 0)
}

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn durable_names(tree: &Tree, dir: Ino) -> Vec<String> {
    tree.durable_entries(dir)
        .unwrap()
        .keys()
        .map(|k| k.to_string_lossy().into_owned())
        .collect()
}

#[test]
fn create_is_live_only_until_dir_fsync() {
    let mut t = Tree::new(meta());
    let f = t.create_file(ROOT, n("a"), meta()).unwrap();
    t.write(f, 0, b"hello").unwrap();
    t.fsync(f).unwrap();
    assert!(durable_names(&t, ROOT).is_empty());
    t.fsync(ROOT).unwrap();
    assert_eq!(durable_names(&t, ROOT), ["a"]);
    assert_eq!(t.durable_content(f).unwrap().read(0, 10), b"hello");
}

#[test]
fn unlink_keeps_durable_inode_until_dir_fsync_then_frees_it() {
    let mut t = Tree::new(meta());
    let f = t.create_file(ROOT, n("a"), meta()).unwrap();
    t.write(f, 0, &[1; 100_000]).unwrap();
    t.fsync(f).unwrap();
    t.fsync(ROOT).unwrap();
    t.unlink(ROOT, n("a")).unwrap();
    assert_eq!(t.lookup(ROOT, n("a")), Err(FsError::NotFound));
    assert_eq!(t.inode_count(), 2, "durable entry keeps the file");
    t.fsync(ROOT).unwrap();
    assert_eq!(t.inode_count(), 1, "file freed once nothing refers to it");
}

#[test]
fn open_handle_keeps_unlinked_file() {
    let mut t = Tree::new(meta());
    let f = t.create_file(ROOT, n("a"), meta()).unwrap();
    t.open(f).unwrap();
    t.unlink(ROOT, n("a")).unwrap();
    t.write(f, 0, b"x").unwrap();
    assert_eq!(t.inode_count(), 2);
    t.close(f);
    assert_eq!(t.inode_count(), 1);
}

#[test]
fn rename_over_file_and_fsync_each_dir_independently() {
    let mut t = Tree::new(meta());
    let d1 = t.mkdir(ROOT, n("d1"), meta()).unwrap();
    let d2 = t.mkdir(ROOT, n("d2"), meta()).unwrap();
    let f = t.create_file(d1, n("f"), meta()).unwrap();
    let g = t.create_file(d2, n("g"), meta()).unwrap();
    for ino in [ROOT, d1, d2] {
        t.fsync(ino).unwrap();
    }
    t.rename(d1, n("f"), d2, n("g")).unwrap();
    assert_eq!(t.lookup(d2, n("g")), Ok(f));
    t.fsync(d2).unwrap();
    assert_eq!(
        durable_names(&t, d1),
        ["f"],
        "d1 not fsynced: old name stays"
    );
    assert_eq!(t.durable_entries(d2).unwrap().get(n("g")), Some(&f));
    assert!(t.get(g).is_err(), "replaced file freed");
}

#[test]
fn rename_rules() {
    let mut t = Tree::new(meta());
    let d = t.mkdir(ROOT, n("d"), meta()).unwrap();
    let sub = t.mkdir(d, n("sub"), meta()).unwrap();
    t.create_file(ROOT, n("f"), meta()).unwrap();
    t.create_file(sub, n("x"), meta()).unwrap();
    assert_eq!(t.rename(ROOT, n("d"), sub, n("d")), Err(FsError::Invalid));
    assert_eq!(t.rename(ROOT, n("f"), ROOT, n("d")), Err(FsError::IsDir));
    assert_eq!(t.rename(d, n("sub"), ROOT, n("f")), Err(FsError::NotDir));
    let e = t.mkdir(ROOT, n("e"), meta()).unwrap();
    assert_eq!(t.rename(ROOT, n("e"), d, n("sub")), Err(FsError::NotEmpty));
    t.rename(d, n("sub"), ROOT, n("e")).unwrap();
    assert!(t.get(e).is_err());
    assert_eq!(t.rmdir(ROOT, n("e")), Err(FsError::NotEmpty));
    assert_eq!(t.rmdir(ROOT, n("f")), Err(FsError::NotDir));
    assert_eq!(t.unlink(ROOT, n("d")), Err(FsError::IsDir));
    assert_eq!(t.create_file(ROOT, n("f"), meta()), Err(FsError::Exists));
    let long = "x".repeat(256);
    assert_eq!(
        t.create_file(ROOT, n(&long), meta()),
        Err(FsError::NameTooLong)
    );
}

#[test]
fn freeing_a_directory_releases_its_durable_entries() {
    let mut t = Tree::new(meta());
    let d = t.mkdir(ROOT, n("d"), meta()).unwrap();
    let f = t.create_file(d, n("f"), meta()).unwrap();
    t.fsync(d).unwrap(); // d's durable entries hold f, but d itself is not durable
    t.unlink(d, n("f")).unwrap();
    assert!(t.get(f).is_ok());
    t.rmdir(ROOT, n("d")).unwrap();
    assert_eq!(t.inode_count(), 1);
}

#[test]
fn unknown_inodes_are_not_found() {
    let mut t = Tree::new(meta());
    assert_eq!(t.get(99).err(), Some(FsError::NotFound));
    assert_eq!(t.fsync(99), Err(FsError::NotFound));
    assert_eq!(t.write(99, 0, b"x"), Err(FsError::NotFound));
    assert_eq!(t.lookup(99, n("x")), Err(FsError::NotFound));
    t.close(99);
    t.forget(99, 1);
    assert_eq!(t.write(ROOT, 0, b"x"), Err(FsError::IsDir));
}
