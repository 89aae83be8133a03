//! The token key file: created once with mode 0600, read back, refused when
//! damaged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use tb_seller::{CipherError, KEY_FILE, SellerSecret, TokenCipher};

#[test]
fn created_private_then_reused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("nested/data");
    let first = TokenCipher::load_or_create(&data_dir).unwrap();
    let path = data_dir.join(KEY_FILE);
    let key = std::fs::read(&path).unwrap();
    assert_eq!(key.len(), 32);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{mode:o}");
    }
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(&data_dir).unwrap().count(), 1);

    let secret = SellerSecret::new("tok-abc");
    let (ct, nonce) = first.encrypt(&secret).unwrap();
    let second = TokenCipher::load_or_create(&data_dir).unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        key,
        "the key is not replaced"
    );
    assert_eq!(second.decrypt(&ct, &nonce).unwrap(), secret);
}

#[test]
fn concurrent_creation_agrees_on_one_key() {
    let dir = tempfile::tempdir().unwrap();
    let ciphers: Vec<TokenCipher> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| TokenCipher::load_or_create(dir.path()).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let secret = SellerSecret::new("tok-shared");
    let (ct, nonce) = ciphers[0].encrypt(&secret).unwrap();
    for c in &ciphers {
        assert_eq!(c.decrypt(&ct, &nonce).unwrap(), secret);
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_damaged_key_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(KEY_FILE);
    for len in [0usize, 31, 33, 64] {
        std::fs::write(&path, vec![1u8; len]).unwrap();
        let err = TokenCipher::load_or_create(dir.path()).unwrap_err();
        assert!(
            matches!(err, CipherError::WrongSize { len: l, .. } if l == len),
            "{err}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("{len} bytes, not 32")), "{msg}");
    }
    // Left untouched: the user decides.
    assert_eq!(std::fs::read(&path).unwrap().len(), 64);
}

#[cfg(unix)]
#[test]
fn an_unreadable_data_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the data directory should be.
    let not_a_dir = dir.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let err = TokenCipher::load_or_create(&not_a_dir).unwrap_err();
    assert!(matches!(err, CipherError::Io { .. }), "{err}");
    assert!(err.to_string().contains("token key"), "{err}");
}

#[test]
fn a_copied_ledger_row_is_useless_without_the_key() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let ours = TokenCipher::load_or_create(a.path()).unwrap();
    let theirs = TokenCipher::load_or_create(b.path()).unwrap();
    let (ct, nonce) = ours.encrypt(&SellerSecret::new("tok-xyz")).unwrap();
    assert!(matches!(
        theirs.decrypt(&ct, &nonce),
        Err(CipherError::Decrypt)
    ));
}
