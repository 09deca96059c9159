use super::pack::TAIL_BYTES;
use super::*;
use crate::unixfs::{directory_node, Link, RAW};
use std::time::SystemTime;

fn raw(bytes: &[u8]) -> Block {
    Block::new(RAW, bytes.to_vec()).unwrap()
}

fn link(block: &Block) -> Link {
    Link {
        cid: block.cid,
        name: format!("{}", block.cid),
        tsize: block.data.len() as u64,
    }
}

/// The finished packs in the store's folder, by file name.
fn pack_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("packs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(".pack"))
        .collect();
    names.sort();
    names
}

fn sorted(mut cids: Vec<Cid>) -> Vec<Cid> {
    cids.sort();
    cids
}

fn set_modified(path: &Path, ago: Duration) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now() - ago))
        .unwrap();
}

const TWO_HOURS: Duration = Duration::from_secs(2 * 60 * 60);

#[test]
fn blocks_round_trip_are_stored_once_and_found_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let block = raw(b"block bytes");
    assert!(store.put_block(&block).unwrap());
    assert!(!store.put_block(&block).unwrap());
    assert_eq!(
        store.get_block(&block.cid).unwrap(),
        block.data,
        "from the open pack"
    );
    assert!(store.get_block(&raw(b"never stored").cid).is_err());
    store.sync().unwrap();
    assert_eq!(pack_files(dir.path()).len(), 1);
    let reopened = LocalStore::open(dir.path()).unwrap();
    assert!(reopened.holds_whole(&block.cid, block.data.len() as u64));
    assert!(!reopened.holds_whole(&block.cid, 3), "another size");
    assert!(!reopened.put_block(&block).unwrap());
    let bytes = reopened.get_block(&block.cid).unwrap();
    assert_eq!(Block::verified(&block.cid, bytes).unwrap(), block);
}

/// A process stopped before its pack was finished leaves a `.partial` file no index names:
/// its blocks are not held, and are written again.
#[test]
fn the_blocks_of_a_pack_never_finished_are_written_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let block = raw(b"written, never synced");
    store.put_block(&block).unwrap();
    std::mem::forget(store);
    let reopened = LocalStore::open(dir.path()).unwrap();
    assert!(!reopened.holds_whole(&block.cid, block.data.len() as u64));
    assert!(reopened.put_block(&block).unwrap(), "written again");
    reopened.sync().unwrap();
    assert_eq!(reopened.get_block(&block.cid).unwrap(), block.data);
}

#[test]
fn packs_are_closed_at_their_target_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let blocks: Vec<Block> = (0..40u8)
        .map(|n| raw(&crate::random::random_bytes(1 << 20, u64::from(n))))
        .collect();
    for block in &blocks {
        store.put_block(block).unwrap();
    }
    store.sync().unwrap();
    let packs = pack_files(dir.path());
    assert_eq!(packs.len(), 3, "{packs:?}");
    for pack in &packs {
        let len = fs::metadata(dir.path().join("packs").join(pack))
            .unwrap()
            .len();
        assert!(len < PACK_TARGET_BYTES + (2 << 20), "{pack}: {len}");
    }
    let reopened = LocalStore::open(dir.path()).unwrap();
    for block in &blocks {
        assert_eq!(reopened.get_block(&block.cid).unwrap(), block.data);
    }
}

/// A pinned root reaching a node that cannot be read: the collection stops and removes
/// nothing, not even a block no pin reaches, since what the bad node links to is unknown.
#[test]
fn garbage_collection_with_an_unreadable_block_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path())
        .unwrap()
        .with_grace(Duration::ZERO);
    let (leaf, unreferenced) = (raw(b"leaf"), raw(b"unreferenced"));
    let middle = directory_node(vec![link(&leaf)]).unwrap();
    let root = directory_node(vec![link(&middle)]).unwrap();
    // One pack each: the unreferenced block's pack is wholly garbage.
    for block in [&leaf, &unreferenced, &middle, &root] {
        store.put_block(block).unwrap();
        store.sync().unwrap();
    }
    store.pin(&root.cid).unwrap();
    let BlockLocation { pack, offset, .. } = store.locate(&middle.cid).unwrap().unwrap();
    let original = fs::read(&pack).unwrap();
    let mut damaged = original.clone();
    damaged[offset as usize] ^= 0xff;
    for (what, content) in [("missing", None), ("damaged", Some(&damaged))] {
        match content {
            None => fs::remove_file(&pack).unwrap(),
            Some(bytes) => fs::write(&pack, bytes).unwrap(),
        }
        let store = LocalStore::open(dir.path())
            .unwrap()
            .with_grace(Duration::ZERO);
        let error = store.collect_garbage().unwrap_err();
        assert!(
            format!("{error:#}").contains("cannot follow"),
            "{what}: {error:#}"
        );
        assert_eq!(
            pack_files(dir.path()).len(),
            4 - usize::from(content.is_none()),
            "{what}"
        );
        fs::write(&pack, &original).unwrap();
    }
    let store = LocalStore::open(dir.path())
        .unwrap()
        .with_grace(Duration::ZERO);
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.removed_blocks, report.kept_blocks), (1, 3));
    assert_eq!(pack_files(dir.path()).len(), 3);
}

/// A pack whose index is garbled: its blocks are not trusted (written again when put), and
/// garbage collection refuses to run, naming it, rather than guess what it holds.
#[test]
fn a_pack_with_an_unreadable_index_stops_the_collection() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let (first, second) = (raw(b"first pack"), raw(b"second pack"));
    for block in [&first, &second] {
        store.put_block(block).unwrap();
        store.sync().unwrap();
    }
    let pack = store.locate(&second.cid).unwrap().unwrap().pack;
    drop(store);
    let mut bytes = fs::read(&pack).unwrap();
    let at = bytes.len() - TAIL_BYTES - 3;
    bytes[at] ^= 1;
    fs::write(&pack, bytes).unwrap();
    let store = LocalStore::open(dir.path())
        .unwrap()
        .with_grace(Duration::ZERO);
    assert_eq!(store.block_cids().unwrap(), [first.cid]);
    let error = store.collect_garbage().unwrap_err();
    assert!(
        format!("{error:#}").contains("does not match its checksum"),
        "{error:#}"
    );
    assert_eq!(pack_files(dir.path()).len(), 2, "nothing removed");
    assert!(store.put_block(&second).unwrap(), "written again");
}

#[test]
fn garbage_collection_keeps_what_pins_reach() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path())
        .unwrap()
        .with_grace(Duration::ZERO);
    let (kept, dropped) = (raw(b"kept"), raw(b"dropped"));
    let root = directory_node(vec![link(&kept)]).unwrap();
    let other_root = directory_node(vec![link(&dropped)]).unwrap();
    for block in [&kept, &root] {
        store.put_block(block).unwrap();
    }
    store.pin(&root.cid).unwrap();
    for block in [&dropped, &other_root] {
        store.put_block(block).unwrap();
    }
    store.pin(&other_root.cid).unwrap();
    store.unpin(&other_root.cid).unwrap();
    store.unpin(&other_root.cid).unwrap();
    let report = store.collect_garbage().unwrap();
    assert_eq!((report.removed_blocks, report.kept_blocks), (2, 2));
    assert_eq!(
        sorted(store.block_cids().unwrap()),
        sorted(vec![kept.cid, root.cid])
    );
    assert_eq!(pack_files(dir.path()).len(), 1);
}

/// A pack no pin reaches stays while it is younger than the grace period (a pass interrupted
/// before its pin finds its blocks again), and goes once older; so does a partial pack.
#[test]
fn unreferenced_packs_stay_for_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let (recent, old) = (raw(b"written just now"), raw(b"written two hours ago"));
    for block in [&old, &recent] {
        store.put_block(block).unwrap();
        store.sync().unwrap();
    }
    set_modified(&store.locate(&old.cid).unwrap().unwrap().pack, TWO_HOURS);
    drop(store);
    let store = LocalStore::open(dir.path()).unwrap();
    let partial = dir.path().join("packs/left-by-a-crash.partial");
    fs::write(&partial, b"bbpack1\n").unwrap();
    let report = store.collect_garbage().unwrap();
    assert_eq!(
        (
            report.removed_blocks,
            report.young_blocks,
            report.kept_blocks
        ),
        (1, 1, 0)
    );
    assert_eq!(report.removed_bytes, old.data.len() as u64);
    assert_eq!(store.block_cids().unwrap(), [recent.cid]);
    assert!(partial.exists(), "young");
    set_modified(&partial, TWO_HOURS);
    store.collect_garbage().unwrap();
    assert!(!partial.exists(), "old");
}

/// A pack mostly garbage is rewritten with its reached blocks only; one mostly reached is
/// kept as it is.
#[test]
fn packs_mostly_garbage_are_repacked() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path())
        .unwrap()
        .with_grace(Duration::ZERO);
    let blocks: Vec<Block> = (0..8u8).map(|n| raw(&[n; 1000])).collect();
    // Pack one: blocks 0..4, of which one is reached (25 %); pack two: blocks 4..8, of
    // which three are (75 %).
    for half in blocks.chunks(4) {
        for block in half {
            store.put_block(block).unwrap();
        }
        store.sync().unwrap();
    }
    let reached = [&blocks[0], &blocks[4], &blocks[5], &blocks[6]];
    let root = directory_node(reached.iter().map(|block| link(block)).collect()).unwrap();
    store.put_block(&root).unwrap();
    store.pin(&root.cid).unwrap();
    let before = pack_files(dir.path());
    let report = store.collect_garbage().unwrap();
    assert_eq!(report.repacked_blocks, 1, "{report:?}");
    assert_eq!(report.removed_blocks, 3, "{report:?}");
    assert_eq!(report.removed_bytes, 3000, "{report:?}");
    assert_eq!(report.garbage_kept_blocks, 1, "{report:?}");
    assert_eq!(report.kept_blocks, 5, "{report:?}");
    let after = pack_files(dir.path());
    assert_eq!(after.len(), 3, "{after:?}");
    assert!(!after.contains(&before[0]), "the first pack is gone");
    let reopened = LocalStore::open(dir.path()).unwrap();
    let mut expected: Vec<Cid> = reached.iter().map(|block| block.cid).collect();
    expected.extend([blocks[7].cid, root.cid]);
    assert_eq!(sorted(reopened.block_cids().unwrap()), sorted(expected));
    for block in reached {
        assert_eq!(reopened.get_block(&block.cid).unwrap(), block.data);
    }
}

/// A store opened while another process repacks finds the moved blocks in their new pack.
#[test]
fn a_block_moved_by_another_process_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let writer = LocalStore::open(dir.path()).unwrap();
    let (kept, garbage) = (raw(&[1; 1000]), raw(&[2; 4000]));
    let root = directory_node(vec![link(&kept)]).unwrap();
    for block in [&kept, &garbage, &root] {
        writer.put_block(block).unwrap();
    }
    writer.pin(&root.cid).unwrap();
    drop(writer);
    let reader = LocalStore::open(dir.path()).unwrap();
    let collector = LocalStore::open(dir.path())
        .unwrap()
        .with_grace(Duration::ZERO);
    assert_eq!(collector.collect_garbage().unwrap().repacked_blocks, 2);
    assert_eq!(reader.get_block(&kept.cid).unwrap(), kept.data);
    let error = reader.get_block(&garbage.cid).unwrap_err();
    assert!(
        format!("{error:#}").contains("not in the store"),
        "{error:#}"
    );
}

/// A store of the earlier layout, one file per block: its blocks move into a pack; a file
/// that does not match its CID stays where it was.
#[test]
fn block_files_of_the_earlier_layout_move_into_packs() {
    let dir = tempfile::tempdir().unwrap();
    let old = dir.path().join("blocks");
    fs::create_dir_all(&old).unwrap();
    let (good, garbled) = (raw(b"a good block"), raw(b"a garbled block"));
    fs::write(old.join(good.cid.to_string()), &good.data).unwrap();
    fs::write(old.join(garbled.cid.to_string()), b"other bytes").unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    assert_eq!(store.block_cids().unwrap(), [good.cid]);
    assert_eq!(store.get_block(&good.cid).unwrap(), good.data);
    assert_eq!(pack_files(dir.path()).len(), 1);
    assert!(!old.join(good.cid.to_string()).exists());
    assert!(old.join(garbled.cid.to_string()).exists());
}
