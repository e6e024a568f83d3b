use super::*;

fn image() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("inventory.img"), b"inventory").unwrap();
    let pages: Vec<u8> = (0..3 << 20).map(|i: u32| (i / 13 % 7) as u8).collect();
    fs::write(dir.path().join("pages-1.img"), pages).unwrap();
    dir
}

fn all_options() -> Vec<StoreOptions> {
    let key = SecretKey::generate().unwrap();
    let mut out = Vec::new();
    for compression in [
        Compression::None,
        Compression::Lz4,
        Compression::Zstd { level: 3 },
    ] {
        for encrypt in [None, Some(key.clone())] {
            for sign in [None, Some(key.clone())] {
                out.push(StoreOptions {
                    compression,
                    encrypt: encrypt.clone(),
                    sign,
                    recipients: Vec::new(),
                    no_sync: false,
                    direct_io: false,
                });
            }
        }
    }
    out
}

fn open_opts(o: &StoreOptions) -> OpenOptions {
    OpenOptions {
        decrypt: o.encrypt.clone(),
        require_signature: o.sign.as_ref().map(|k| k.signing().verifying_key()),
        ..Default::default()
    }
}

#[test]
fn every_combination_round_trips() {
    for o in all_options().iter().filter(|o| !o.is_plain()) {
        let dir = image();
        let before = fs::read(dir.path().join("pages-1.img")).unwrap();
        seal_dir(dir.path(), o, None).unwrap();
        let opened = open(dir.path(), &open_opts(o)).unwrap();
        let after = fs::read(opened.dir().join("pages-1.img")).unwrap();
        assert!(after == before, "{o:?}");
        let temp = opened.dir().to_path_buf();
        drop(opened);
        if o.rewrites() {
            assert!(!temp.exists(), "the plain copy is removed");
        }
    }
}

#[test]
fn any_flipped_byte_is_refused() {
    for o in all_options().iter().filter(|o| !o.is_plain()) {
        let dir = image();
        seal_dir(dir.path(), o, None).unwrap();
        for name in ["pages-1.img", "inventory.img", MANIFEST] {
            let path = dir.path().join(name);
            let mut bytes = fs::read(&path).unwrap();
            let at = bytes.len() * 2 / 3;
            bytes[at] ^= 4;
            fs::write(&path, &bytes).unwrap();
            assert!(open(dir.path(), &open_opts(o)).is_err(), "{o:?} {name}");
            bytes[at] ^= 4;
            fs::write(&path, &bytes).unwrap();
        }
        assert!(open(dir.path(), &open_opts(o)).is_ok());
    }
}

#[test]
fn age_recipients_unwrap_with_their_identity_only() {
    let keys = tempfile::tempdir().unwrap();
    let (id, other) = (keys.path().join("id"), keys.path().join("other"));
    let public = recipients::write_identity(&id).unwrap();
    recipients::write_identity(&other).unwrap();
    let o = StoreOptions {
        compression: Compression::Zstd { level: 3 },
        encrypt: Some(SecretKey::generate().unwrap()),
        recipients: recipients::parse_recipients(&[public]).unwrap(),
        ..Default::default()
    };
    let dir = image();
    seal_dir(dir.path(), &o, None).unwrap();
    let m = manifest(dir.path()).unwrap().unwrap();
    assert!(
        matches!(m.cipher, Cipher::AgeX25519 { .. }),
        "{:?}",
        m.cipher
    );
    let secret = o.encrypt.as_ref().unwrap().bytes();
    let stored = fs::read(dir.path().join(MANIFEST)).unwrap();
    assert!(
        !stored.windows(32).any(|w| w == secret),
        "the secret is in store.img"
    );
    let missing = open(dir.path(), &OpenOptions::default()).unwrap_err();
    assert!(matches!(missing, StoreError::Encrypted { .. }), "{missing}");
    let mut wrong = OpenOptions::default();
    wrong.read_decrypt_key(&other).unwrap();
    let err = open(dir.path(), &wrong).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey { .. }), "{err}");
    let mut right = OpenOptions::default();
    right.read_decrypt_key(&id).unwrap();
    let opened = open(dir.path(), &right).unwrap();
    let pages = fs::read(opened.dir().join("pages-1.img")).unwrap();
    assert_eq!(pages.len(), 3 << 20);
}

#[test]
fn keys_and_signatures_are_required() {
    let key = SecretKey::generate().unwrap();
    let other = SecretKey::generate().unwrap();
    let o = StoreOptions {
        compression: Compression::Lz4,
        encrypt: Some(key.clone()),
        sign: Some(key.clone()),
        recipients: Vec::new(),
        no_sync: false,
        direct_io: false,
    };
    let dir = image();
    seal_dir(dir.path(), &o, None).unwrap();
    let missing = open(dir.path(), &OpenOptions::default()).unwrap_err();
    assert!(matches!(missing, StoreError::Encrypted { .. }), "{missing}");
    let wrong = OpenOptions {
        decrypt: Some(other.clone()),
        ..Default::default()
    };
    assert!(matches!(
        open(dir.path(), &wrong),
        Err(StoreError::WrongKey { .. })
    ));
    let signer = OpenOptions {
        decrypt: Some(key.clone()),
        require_signature: Some(other.signing().verifying_key()),
        ..Default::default()
    };
    assert!(matches!(
        open(dir.path(), &signer),
        Err(StoreError::OtherSigner { .. })
    ));
    fs::remove_file(dir.path().join(SIGNATURE)).unwrap();
    let unsigned = open(dir.path(), &open_opts(&o)).unwrap_err();
    assert!(
        matches!(unsigned, StoreError::NotSigned { .. }),
        "{unsigned}"
    );
    // A plain image has no manifest: refused when a signature is required.
    let plain = image();
    assert!(matches!(
        open(plain.path(), &open_opts(&o)),
        Err(StoreError::NotSigned { .. })
    ));
}

#[test]
fn unlisted_or_removed_files_are_refused() {
    let o = StoreOptions {
        sign: Some(SecretKey::generate().unwrap()),
        ..Default::default()
    };
    let dir = image();
    seal_dir(dir.path(), &o, None).unwrap();
    fs::write(dir.path().join("cgroup.img"), b"x").unwrap();
    let err = open(dir.path(), &open_opts(&o)).unwrap_err();
    assert!(matches!(err, StoreError::Unlisted { .. }), "{err}");
    fs::remove_file(dir.path().join("cgroup.img")).unwrap();
    fs::remove_file(dir.path().join("inventory.img")).unwrap();
    assert!(open(dir.path(), &open_opts(&o)).is_err());
}

#[test]
fn keys_never_reach_the_image() {
    let key = SecretKey::generate().unwrap();
    let o = StoreOptions {
        compression: Compression::None,
        encrypt: Some(key.clone()),
        sign: Some(key.clone()),
        recipients: Vec::new(),
        no_sync: false,
        direct_io: false,
    };
    let dir = image();
    seal_dir(dir.path(), &o, None).unwrap();
    let secret = key.derive("x");
    let raw: Vec<[u8; 32]> = vec![
        key.signing().to_bytes(),
        key.derive(sealed::CIPHER_CONTEXT),
        key.derive(MAC_CONTEXT),
        secret,
    ];
    for name in file_names(dir.path())
        .unwrap()
        .iter()
        .chain([&MANIFEST.into()])
    {
        let bytes = fs::read(dir.path().join(name)).unwrap();
        for k in &raw {
            assert!(!bytes.windows(32).any(|w| w == k), "{name}");
        }
    }
}

#[test]
fn pages_sealed_as_written_unseal_to_the_plain_file() {
    use crate::image::pages::PagesWriter;
    let key = SecretKey::generate().unwrap();
    let data: Vec<u8> = (0..(3 << 20) + 8192)
        .map(|i: u32| (i / 11 % 5) as u8)
        .collect();
    for o in all_options().iter().filter(|o| o.rewrites()) {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.img");
        let mut w = PagesWriter::create(&plain).unwrap();
        w.write_pieces(&[&data[..4096], &data[4096..]]).unwrap();
        w.finish().unwrap();
        let img = dir.path().join("img");
        fs::create_dir(&img).unwrap();
        let how = StoreOptions {
            encrypt: o.encrypt.as_ref().map(|_| key.clone()),
            ..o.clone()
        };
        let sealing = how.pages_sealing().unwrap();
        let mut w =
            PagesWriter::create_sealed(&img.join("pages-1.img"), "pages-1.img", &sealing).unwrap();
        w.write_pieces(&[&data[..4096], &data[4096..]]).unwrap();
        w.finish().unwrap();
        fs::write(img.join("inventory.img"), b"inventory").unwrap();
        seal_dir(&img, &how, Some(&sealing.done)).unwrap();
        let opened = open(&img, &open_opts(&how)).unwrap();
        let back = fs::read(opened.dir().join("pages-1.img")).unwrap();
        assert!(back == fs::read(&plain).unwrap(), "{o:?}");
        drop(opened);
        let path = img.join("pages-1.img");
        let mut bytes = fs::read(&path).unwrap();
        for at in [45, bytes.len() / 2, bytes.len() - 30] {
            bytes[at] ^= 2;
            fs::write(&path, &bytes).unwrap();
            assert!(open(&img, &open_opts(&how)).is_err(), "{o:?} byte {at}");
            bytes[at] ^= 2;
        }
    }
}
