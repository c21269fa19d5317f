//! The conformance suite every [`BlobStore`] backend must pass. A backend's
//! test is its constructor and one call to [`conformance`]. Each case cleans
//! up after itself, and the suite checks that the store ends empty.

use crate::blob_store::{BlobStore, ByteRange, ByteStream};
use crate::error::ErrorKind;
use crate::key::ObjectKey;
use crate::{Digest, StorageError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};

fn body_of(chunks: Vec<Vec<u8>>) -> ByteStream {
    futures::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from(c)))).boxed()
}

async fn read(store: &dyn BlobStore, key: &ObjectKey, range: Option<ByteRange>) -> Vec<u8> {
    let chunks: Vec<Bytes> = store
        .get(key, range)
        .await
        .expect("get")
        .try_collect()
        .await
        .expect("read body");
    chunks.concat()
}

fn key(n: u8) -> ObjectKey {
    ObjectKey::blob(&Digest::sha256_of(&[n]))
}

/// Runs every case against `store`, which must start empty.
pub async fn conformance(store: &dyn BlobStore) {
    put_get_head_delete(store).await;
    missing_objects_are_not_found(store).await;
    range_reads(store).await;
    failed_put_writes_nothing(store).await;
    overwrite_is_whole(store).await;
    list_by_prefix(store).await;
    rename_moves(store).await;
    concurrent_writers_of_one_key(store).await;
    empty_object(store).await;
    if store.can_append() {
        append_in_place(store).await;
    }
    let everything = store
        .list(&ObjectKey::from_listing("blobs").expect("key"))
        .await
        .expect("list");
    assert!(everything.is_empty(), "store not empty: {everything:?}");
    let uploads = store
        .list(&ObjectKey::from_listing("uploads").expect("key"))
        .await
        .expect("list");
    assert!(uploads.is_empty(), "uploads not empty: {uploads:?}");
}

async fn put_get_head_delete(store: &dyn BlobStore) {
    let k = key(1);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let chunks = data.chunks(70_000).map(<[u8]>::to_vec).collect();
    assert_eq!(
        store.put(&k, body_of(chunks)).await.expect("put"),
        data.len() as u64
    );
    assert_eq!(store.head(&k).await.expect("head").size, data.len() as u64);
    assert_eq!(read(store, &k, None).await, data);
    store.delete(&k).await.expect("delete");
    store.delete(&k).await.expect("delete is idempotent");
    assert_eq!(
        store.head(&k).await.expect_err("gone").kind,
        ErrorKind::NotFound
    );
}

async fn missing_objects_are_not_found(store: &dyn BlobStore) {
    let k = key(2);
    assert_eq!(
        store.head(&k).await.expect_err("head").kind,
        ErrorKind::NotFound
    );
    let err = store
        .get(&k, None)
        .await
        .err()
        .expect("get of a missing key fails");
    assert_eq!(err.kind, ErrorKind::NotFound);
    let err = store.rename(&k, &key(3)).await.expect_err("rename");
    assert_eq!(err.kind, ErrorKind::NotFound);
}

async fn range_reads(store: &dyn BlobStore) {
    let k = key(4);
    store
        .put(&k, body_of(vec![b"0123456789".to_vec()]))
        .await
        .expect("put");
    assert_eq!(
        read(store, &k, Some(ByteRange { start: 2, end: 5 })).await,
        b"234"
    );
    assert_eq!(
        read(store, &k, Some(ByteRange { start: 9, end: 10 })).await,
        b"9"
    );
    assert_eq!(
        read(store, &k, Some(ByteRange { start: 10, end: 10 })).await,
        b""
    );
    let err = store
        .get(&k, Some(ByteRange { start: 5, end: 11 }))
        .await
        .err()
        .expect("a range past the end fails");
    assert_eq!(err.kind, ErrorKind::InvalidRange);
    store.delete(&k).await.expect("delete");
}

async fn failed_put_writes_nothing(store: &dyn BlobStore) {
    let k = key(5);
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(StorageError::new(
            ErrorKind::Unavailable,
            "client went away",
        )),
    ])
    .boxed();
    store
        .put(&k, failing)
        .await
        .expect_err("put of a failing body fails");
    assert_eq!(
        store.head(&k).await.expect_err("nothing written").kind,
        ErrorKind::NotFound
    );
}

async fn overwrite_is_whole(store: &dyn BlobStore) {
    let k = key(6);
    store
        .put(&k, body_of(vec![b"first version".to_vec()]))
        .await
        .expect("put");
    store
        .put(&k, body_of(vec![b"second".to_vec()]))
        .await
        .expect("put");
    assert_eq!(read(store, &k, None).await, b"second");
    store.delete(&k).await.expect("delete");
}

async fn list_by_prefix(store: &dyn BlobStore) {
    let upload = uuid::Uuid::new_v4();
    let other = uuid::Uuid::new_v4();
    let a = ObjectKey::upload_part(&upload, 0);
    let b = ObjectKey::upload_part(&upload, 3);
    let c = ObjectKey::upload_part(&other, 0);
    for k in [&b, &a, &c] {
        store
            .put(k, body_of(vec![b"abc".to_vec()]))
            .await
            .expect("put");
    }
    let listed = store
        .list(&ObjectKey::upload_prefix(&upload))
        .await
        .expect("list");
    let keys: Vec<_> = listed.iter().map(|(k, _)| k.clone()).collect();
    assert_eq!(keys, vec![a.clone(), b.clone()]);
    assert!(listed.iter().all(|(_, m)| m.size == 3));
    for k in [&a, &b, &c] {
        store.delete(k).await.expect("delete");
    }
    assert!(store
        .list(&ObjectKey::upload_prefix(&upload))
        .await
        .expect("list")
        .is_empty());
}

async fn rename_moves(store: &dyn BlobStore) {
    let upload = uuid::Uuid::new_v4();
    let from = ObjectKey::upload_part(&upload, 0);
    let to = key(7);
    store
        .put(&from, body_of(vec![b"moved".to_vec()]))
        .await
        .expect("put");
    store.rename(&from, &to).await.expect("rename");
    assert_eq!(read(store, &to, None).await, b"moved");
    assert_eq!(
        store.head(&from).await.expect_err("source gone").kind,
        ErrorKind::NotFound
    );
    store.delete(&to).await.expect("delete");
}

async fn concurrent_writers_of_one_key(store: &dyn BlobStore) {
    let k = key(8);
    let data = vec![7u8; 1 << 20];
    let writers = (0..4).map(|_| {
        let chunks = data.chunks(64 << 10).map(<[u8]>::to_vec).collect();
        store.put(&k, body_of(chunks))
    });
    for result in futures::future::join_all(writers).await {
        result.expect("concurrent put");
    }
    assert_eq!(read(store, &k, None).await, data);
    store.delete(&k).await.expect("delete");
}

async fn empty_object(store: &dyn BlobStore) {
    let k = key(9);
    assert_eq!(store.put(&k, body_of(vec![])).await.expect("put"), 0);
    assert_eq!(store.head(&k).await.expect("head").size, 0);
    assert_eq!(read(store, &k, None).await, b"");
    store.delete(&k).await.expect("delete");
}

async fn append_in_place(store: &dyn BlobStore) {
    let upload = uuid::Uuid::new_v4();
    let k = ObjectKey::upload_part(&upload, 0);
    assert_eq!(
        store
            .append(&k, 0, body_of(vec![b"abc".to_vec()]))
            .await
            .expect("create"),
        3
    );
    assert_eq!(
        store
            .append(&k, 3, body_of(vec![b"de".to_vec(), b"f".to_vec()]))
            .await
            .expect("append"),
        6
    );
    let err = store
        .append(&k, 4, body_of(vec![b"x".to_vec()]))
        .await
        .expect_err("wrong offset");
    assert_eq!(err.kind, ErrorKind::InvalidRange);
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from_static(b"partial")),
        Err(StorageError::new(
            ErrorKind::Unavailable,
            "client went away",
        )),
    ])
    .boxed();
    store.append(&k, 6, failing).await.expect_err("failed body");
    assert_eq!(
        read(store, &k, None).await,
        b"abcdef",
        "a failed append leaves the object as it was"
    );
    // Appends of odd sizes in odd chunks, starting and ending anywhere in a
    // 4 KiB block and crossing any internal write buffer of a few MiB.
    let mut expected = b"abcdef".to_vec();
    for (total, chunk) in [(4090, 1000), (9_000_001, 65_537), (1, 1), (5_000, 4096)] {
        let data: Vec<u8> = (0..total)
            .map(|i| ((i * 7 + expected.len()) % 251) as u8)
            .collect();
        let chunks = data.chunks(chunk).map(<[u8]>::to_vec).collect();
        let end = store
            .append(&k, expected.len() as u64, body_of(chunks))
            .await
            .expect("append");
        expected.extend_from_slice(&data);
        assert_eq!(end, expected.len() as u64);
        assert_eq!(store.head(&k).await.expect("head").size, end);
    }
    let failing = futures::stream::iter(vec![
        Ok(Bytes::from(vec![9u8; 6 << 20])),
        Err(StorageError::new(
            ErrorKind::Unavailable,
            "client went away",
        )),
    ])
    .boxed();
    let at = expected.len() as u64;
    store
        .append(&k, at, failing)
        .await
        .expect_err("failed body");
    assert!(
        read(store, &k, None).await == expected,
        "a failed large append leaves the object as it was"
    );
    store.delete(&k).await.expect("delete");
}
