//! The image store end to end: `dump --compress/--encrypt-key/--encrypt-to/--sign/--stream` and the
//! matching restore flags round-trip a real victim, and every damaged, unsigned,
//! wrongly keyed or cut image or stream is refused before any process is created; a
//! dump whose store step fails leaves its target running untouched.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Proc, Start, TempDir};

/// A `memory` victim (small random region, so restores stay quick), ready.
fn victim(tmp: &TempDir) -> Proc {
    victim_in(tmp, "work")
}

/// A `memory` victim working (and logging) in `tmp/work`.
fn victim_in(tmp: &TempDir, work: &str) -> Proc {
    let work = tmp.join(work);
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut victim = common::spawn_victim("memory", &["-s", "8"], &work);
    assert_eq!(victim.wait_ready(), Start::Ready);
    victim
}

/// `stasis keygen tmp/NAME`: the secret key's path (its public key is `NAME.pub`).
fn keygen(tmp: &TempDir, name: &str) -> PathBuf {
    let key = tmp.join(name);
    common::stasis(&[OsStr::new("keygen"), key.as_os_str()]).assert_ok("keygen");
    key
}

fn public(key: &Path) -> PathBuf {
    PathBuf::from(format!("{}.pub", key.display()))
}

fn s(p: &Path) -> &str {
    p.to_str().expect("test paths are UTF-8")
}

/// `stasis restore -D img -d --pidfile ... EXTRA`: Ok(pid) or the failed output.
fn restore(img: &Path, extra: &[&str]) -> Result<i32, common::Output> {
    let pidfile = img.with_extension("pid");
    let _ = std::fs::remove_file(&pidfile);
    let mut args = vec!["restore", "-D", s(img), "-d", "--pidfile", s(&pidfile)];
    args.extend_from_slice(extra);
    let out = common::stasis(&args);
    if !out.status.success() {
        return Err(out);
    }
    let text = std::fs::read_to_string(&pidfile).expect("pidfile");
    Ok(text.trim().parse().expect("pid in the pidfile"))
}

/// Dumps (and kills) `victim` into `img` with `args`.
/// Returns what the dump printed.
fn dump(victim: &mut Proc, img: &Path, args: &[&str]) -> String {
    let out = common::dump(victim.pid, img, args);
    out.assert_ok("dump");
    victim.wait_exit(common::EXIT_TIMEOUT);
    format!("{}{}", out.stdout, out.stderr)
}

/// A refused restore: exit 1, and no process took the pid.
fn refused(pid: i32, out: Result<i32, common::Output>, what: &str) -> String {
    let out = match out {
        Ok(_) => panic!("{what}: restore succeeded"),
        Err(out) => out,
    };
    let msg = out.assert_failed(what).to_string();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "{what}: pid {pid} was created anyway"
    );
    msg
}

/// The secret key's 64 hex digits and their 32 bytes.
fn key_material(key: &Path) -> (String, Vec<u8>) {
    let hex = std::fs::read_to_string(key)
        .expect("read key")
        .trim()
        .to_string();
    let bytes = (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
        .collect();
    (hex, bytes)
}

fn assert_no_key_in(dir: &Path, key: &Path) {
    let (hex, bytes) = key_material(key);
    for e in std::fs::read_dir(dir).expect("read image").flatten() {
        let data = std::fs::read(e.path()).expect("read image file");
        let found = data.windows(32).any(|w| w == bytes.as_slice())
            || data.windows(64).any(|w| w == hex.as_bytes());
        assert!(!found, "{} holds the key", e.path().display());
    }
}

#[test]
fn store_options_round_trip() {
    let _serial = common::serial();
    require_privileged!("store_options_round_trip");
    let tmp = TempDir::new("store-round-trip");
    let key = keygen(&tmp, "key");
    let (k, p) = (s(&key).to_string(), s(&public(&key)).to_string());
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["--compress", "lz4"], vec![]),
        (vec!["--compress", "zstd:5"], vec![]),
        (vec!["--encrypt-key", &k], vec!["--decrypt-key", &k]),
        (vec!["--sign", &k], vec!["--require-signature", &p]),
        (
            vec!["--compress", "zstd", "--encrypt-key", &k, "--sign", &k],
            vec!["--decrypt-key", &k, "--require-signature", &p],
        ),
    ];
    for (i, (dump_args, restore_args)) in cases.iter().enumerate() {
        let mut v = victim_in(&tmp, &format!("work{i}"));
        let img = tmp.join(format!("img{i}"));
        let printed = dump(&mut v, &img, dump_args);
        assert!(
            img.join("store.img").is_file(),
            "{dump_args:?}: no manifest"
        );
        assert_no_key_in(&img, &key);
        // Keys are named by file only: neither the command line (what `ps` shows) nor
        // what the dump prints holds them.
        let (hex, _) = key_material(&key);
        assert!(!printed.contains(&hex) && !dump_args.iter().any(|a| a.contains(&hex)));
        let pid = restore(&img, restore_args)
            .unwrap_or_else(|o| panic!("{dump_args:?}: restore failed: {o:?}"));
        assert_eq!(pid, v.pid);
        Proc::adopt(pid, &v.log).go_and_expect_pass();
    }
}

/// `stasis keygen --age tmp/NAME`: the identity file and its recipient (`age1...`).
fn age_keygen(tmp: &TempDir, name: &str) -> (PathBuf, String) {
    let id = tmp.join(name);
    let args = [OsStr::new("keygen"), OsStr::new("--age"), id.as_os_str()];
    common::stasis(&args).assert_ok("keygen --age");
    let recipient = std::fs::read_to_string(public(&id)).expect("read the recipient");
    (id, recipient.trim().to_string())
}

#[test]
fn age_recipient_round_trip_and_wrong_identity_refused() {
    let _serial = common::serial();
    require_privileged!("age_recipient_round_trip_and_wrong_identity_refused");
    let tmp = TempDir::new("store-age");
    let (id, recipient) = age_keygen(&tmp, "id");
    let (other, _) = age_keygen(&tmp, "other");
    let secret = std::fs::read_to_string(&id).expect("read identity");
    let secret = secret.lines().find(|l| l.starts_with("AGE-SECRET-KEY-"));
    let secret = secret.expect("an identity line").to_string();
    let mut v = victim(&tmp);
    let img = tmp.join("img");
    let printed = dump(
        &mut v,
        &img,
        &["--compress", "lz4", "--encrypt-to", &recipient],
    );
    assert!(!printed.contains(&secret));
    for e in std::fs::read_dir(&img).expect("read image").flatten() {
        let data = std::fs::read(e.path()).expect("read image file");
        let found = data.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{} holds the identity", e.path().display());
    }
    let none = refused(v.pid, restore(&img, &[]), "restore without a key");
    assert!(none.contains("--decrypt-key"), "{none}");
    let wrong = refused(
        v.pid,
        restore(&img, &["--decrypt-key", s(&other)]),
        "restore with another identity",
    );
    assert!(wrong.contains("not the key"), "{wrong}");
    let pid = restore(&img, &["--decrypt-key", s(&id)])
        .unwrap_or_else(|o| panic!("restore with the identity failed: {o:?}"));
    assert_eq!(pid, v.pid);
    Proc::adopt(pid, &v.log).go_and_expect_pass();
}

#[test]
fn damaged_unsigned_or_wrongly_keyed_images_are_refused() {
    let _serial = common::serial();
    require_privileged!("damaged_unsigned_or_wrongly_keyed_images_are_refused");
    let tmp = TempDir::new("store-refusals");
    let (key, other) = (keygen(&tmp, "key"), keygen(&tmp, "other"));
    let mut v = victim(&tmp);
    let img = tmp.join("img");
    let (k, o) = (s(&key), s(&other));
    dump(
        &mut v,
        &img,
        &["--compress", "lz4", "--encrypt-key", k, "--sign", k],
    );
    let pid = v.pid;
    let p = public(&key);
    let good = ["--decrypt-key", k, "--require-signature", s(&p)];
    let msg = refused(pid, restore(&img, &[]), "no key");
    assert!(msg.contains("--decrypt-key"), "{msg}");
    let msg = refused(pid, restore(&img, &["--decrypt-key", o]), "wrong key");
    assert!(msg.contains("not the key"), "{msg}");
    let op = public(&other);
    let args = ["--decrypt-key", k, "--require-signature", s(&op)];
    let msg = refused(pid, restore(&img, &args), "another signer");
    assert!(msg.contains("another key"), "{msg}");
    // One flipped byte in the middle of the page data (the manifest re-signed would not
    // help: the chunk fails authentication).
    let pages = img.join(format!("pages-{pid}.img"));
    let mut bytes = std::fs::read(&pages).expect("read pages");
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&pages, &bytes).expect("write pages");
    let msg = refused(pid, restore(&img, &good), "tampered page byte");
    assert!(msg.contains("altered"), "{msg}");
    bytes[at] ^= 0x01;
    std::fs::write(&pages, &bytes).expect("write pages");
    // Without its signature.
    let sig = img.join("store.sig");
    let saved = std::fs::read(&sig).expect("read store.sig");
    std::fs::remove_file(&sig).expect("remove store.sig");
    let msg = refused(pid, restore(&img, &good), "unsigned");
    assert!(msg.contains("not signed"), "{msg}");
    std::fs::write(&sig, saved).expect("write store.sig");
    let restored = restore(&img, &good).unwrap_or_else(|o| panic!("restore: {o:?}"));
    Proc::adopt(restored, &v.log).go_and_expect_pass();
}

/// `sh -c SCRIPT` with `$STASIS` set, to completion.
fn shell(script: &str) -> common::Output {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(script).env("STASIS", common::STASIS);
    common::start(&mut cmd).finish(common::STASIS_TIMEOUT)
}

#[test]
fn stream_through_a_pipe_with_compression_encryption_and_signature() {
    let _serial = common::serial();
    require_privileged!("stream_through_a_pipe_with_compression_encryption_and_signature");
    let tmp = TempDir::new("store-stream");
    let key = keygen(&tmp, "key");
    let (k, p) = (s(&key), public(&key));
    let pidfile = tmp.join("restored.pid");
    let mut v = victim(&tmp);
    let script = format!(
        "\"$STASIS\" dump -q -t {} --stream - --compress zstd --encrypt-key {k} --sign {k} \
         | \"$STASIS\" restore --stream - -d --pidfile {} --decrypt-key {k} \
         --require-signature {}",
        v.pid,
        s(&pidfile),
        s(&p)
    );
    // The restore reads to the end of the stream, which comes when the dump has killed
    // the victim and exited; we reap the victim meanwhile (every 5 ms) so its pid is free
    // well before the restore, still unsealing, looks at it.
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(&script).env("STASIS", common::STASIS);
    let mut pipeline = common::start(&mut cmd);
    v.wait_exit(common::EXIT_TIMEOUT);
    pipeline
        .finish(common::STASIS_TIMEOUT)
        .assert_ok("dump --stream - | restore --stream -");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    assert_eq!(pid, v.pid);
    Proc::adopt(pid, &v.log).go_and_expect_pass();
}

#[test]
fn cut_or_corrupt_streams_are_refused() {
    let _serial = common::serial();
    require_privileged!("cut_or_corrupt_streams_are_refused");
    let tmp = TempDir::new("store-stream-cut");
    let mut v = victim(&tmp);
    let stream = tmp.join("checkpoint.stream");
    let out = common::stasis(&[
        "dump",
        "-q",
        "-t",
        &v.pid.to_string(),
        "--stream",
        s(&stream),
    ]);
    out.assert_ok("dump --stream FILE");
    v.wait_exit(common::EXIT_TIMEOUT);
    let bytes = std::fs::read(&stream).expect("read stream");
    let bad = tmp.join("bad.stream");
    let restore_stream = |what: &str| {
        let pidfile = tmp.join("r.pid");
        let args = [
            "restore",
            "--stream",
            s(&bad),
            "-d",
            "--pidfile",
            s(&pidfile),
        ];
        let out = common::stasis(&args);
        let out = if out.status.success() {
            Ok(0)
        } else {
            Err(out)
        };
        refused(v.pid, out, what)
    };
    std::fs::write(&bad, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let msg = restore_stream("truncated stream");
    assert!(msg.contains("truncated"), "{msg}");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 2] ^= 0x40;
    std::fs::write(&bad, &flipped).expect("write");
    let msg = restore_stream("corrupt stream");
    assert!(msg.contains("checksum mismatch"), "{msg}");
    // Through standard input, whole: restored.
    let pidfile = tmp.join("ok.pid");
    let script = format!(
        "\"$STASIS\" restore --stream - -d --pidfile {} < {}",
        s(&pidfile),
        s(&stream)
    );
    shell(&script).assert_ok("restore --stream - < FILE");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .expect("pidfile")
        .trim()
        .parse()
        .expect("pid");
    Proc::adopt(pid, &v.log).go_and_expect_pass();
}

#[test]
fn failed_store_steps_leave_the_target_running() {
    let _serial = common::serial();
    require_privileged!("failed_store_steps_leave_the_target_running");
    let tmp = TempDir::new("store-dump-fails");
    let mut v = victim(&tmp);
    // The stream's file exists: the dump fails at post-dump and releases the tree.
    let taken = tmp.join("taken.stream");
    std::fs::write(&taken, b"x").expect("write");
    let out = common::stasis(&["dump", "-t", &v.pid.to_string(), "--stream", s(&taken)]);
    out.assert_failed("dump --stream onto an existing file");
    common::assert_untouched(&v);
    // A key readable by others is refused before the tree is touched.
    let key = keygen(&tmp, "key");
    let perms = std::os::unix::fs::PermissionsExt::from_mode(0o644);
    std::fs::set_permissions(&key, perms).expect("chmod");
    let img = tmp.join("img");
    let out = common::dump(v.pid, &img, &["--encrypt-key", s(&key)]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
    assert!(!img.exists());
    common::assert_untouched(&v);
    v.go_and_expect_pass();
}

/// Where the kernel has async write-protect userfaultfd (Linux 6.7): the tracking an
/// incremental dump needs. Prints why the test skips otherwise.
fn tracking_available(test: &str) -> bool {
    let out = common::stasis(&["check"]);
    let ok =
        (out.stdout.lines()).any(|l| l.starts_with("OK") && l.contains("UFFD_FEATURE_WP_ASYNC"));
    if !ok {
        common::skip(
            test,
            "the kernel has no userfaultfd async write-protect (Linux 6.7)",
        );
    }
    ok
}

/// Flips one byte in the middle of `path`; returns the original bytes.
fn flip_middle(path: &Path) -> Vec<u8> {
    let saved = std::fs::read(path).expect("read file");
    let mut bytes = saved.clone();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(path, &bytes).expect("write file");
    saved
}

/// An incremental chain sealed throughout: `dump -R --track-mem` and a dump against it
/// (`--prev-images-dir`), both compressed, encrypted and signed. The restore of the
/// second opens and verifies the first with the same key and signature; a tampered or
/// unsigned parent is refused before any process exists; the good chain restores whole.
#[test]
fn sealed_incremental_chain_round_trips_and_a_bad_parent_is_refused() {
    let test = "sealed_incremental_chain_round_trips_and_a_bad_parent_is_refused";
    let _serial = common::serial();
    require_privileged!(test);
    if !tracking_available(test) {
        return;
    }
    let tmp = TempDir::new("store-incremental");
    let key = keygen(&tmp, "key");
    let (k, p) = (s(&key).to_string(), s(&public(&key)).to_string());
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut v = common::spawn_victim("tracked", &[], &work);
    if let Start::Skip(why) = v.wait_ready() {
        return common::skip(test, &why);
    }
    let _family = common::TreeGuard(common::descendants(v.pid));
    let (d0, d1) = (tmp.join("d0"), tmp.join("d1"));
    let sealing = ["--compress", "lz4", "--encrypt-key", &k, "--sign", &k];
    let mut first = vec!["-R", "--track-mem"];
    first.extend_from_slice(&sealing);
    common::dump(v.pid, &d0, &first).assert_ok("dump -R --track-mem, sealed");
    v.signal(libc::SIGUSR2);
    for _ in 0..2000 {
        if v.log_text().lines().any(|l| l == "CHANGED") {
            break;
        }
        common::sleep_ms(5);
    }
    let mut second = vec!["--prev-images-dir", "../d0"];
    second.extend_from_slice(&sealing);
    let family = common::descendants(v.pid);
    dump(&mut v, &d1, &second);
    common::reap_all(&family, false);
    assert!(d1.join("store.sig").is_file() && d0.join("store.sig").is_file());
    let good = [
        "--decrypt-key",
        k.as_str(),
        "--require-signature",
        p.as_str(),
    ];
    // A parent's page byte altered: refused by the parent's manifest digest.
    let pages = d0.join(format!("pages-{}.img", v.pid));
    let saved = flip_middle(&pages);
    let msg = refused(v.pid, restore(&d1, &good), "tampered parent");
    assert!(msg.contains("altered") && msg.contains("d0"), "{msg}");
    std::fs::write(&pages, saved).expect("write pages");
    // The parent's signature gone.
    let sig = d0.join("store.sig");
    let saved = std::fs::read(&sig).expect("read store.sig");
    std::fs::remove_file(&sig).expect("remove store.sig");
    let msg = refused(v.pid, restore(&d1, &good), "unsigned parent");
    assert!(msg.contains("not signed"), "{msg}");
    std::fs::write(&sig, saved).expect("write store.sig");
    let pid = restore(&d1, &good).unwrap_or_else(|o| panic!("restore: {o:?}"));
    assert_eq!(pid, v.pid);
    Proc::adopt(pid, &v.log).go_and_expect_pass();
}

/// The first data chunk of the sealed file `bytes` stored compressed (not raw, not the
/// head chunk): the offset of its body and its length.
fn compressed_chunk(bytes: &[u8]) -> Option<(usize, usize)> {
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let mut at = 40;
    while at + 8 <= bytes.len() {
        let (plain, stored) = (le32(at), le32(at + 4));
        let len = (stored & !(3 << 30)) as usize;
        if plain != 0 && stored >> 30 == 0 {
            return Some((at + 8, len));
        }
        at += 8 + len + 4;
    }
    None
}

/// A victim with 96 MiB of memory dumped with `--compress lz4` onto the disk the tests
/// run on: two pages files, each written by its own thread that compresses in 64 KiB lz4
/// blocks and starts the writeback every 16 MiB. The image round-trips and the victim
/// verifies its memory; the same image with one byte of a compressed chunk flipped is
/// refused before any process exists.
#[test]
fn large_lz4_image_with_early_writeback_round_trips_and_a_bad_chunk_is_refused() {
    let _serial = common::serial();
    require_privileged!(
        "large_lz4_image_with_early_writeback_round_trips_and_a_bad_chunk_is_refused"
    );
    let tmp = TempDir::new("store-lz4-large");
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut v = common::spawn_victim("memory", &["-s", "96"], &work);
    assert_eq!(v.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    dump(&mut v, &img, &["--compress", "lz4"]);
    let pid = v.pid;
    let pages = img.join(format!("pages-{pid}.img"));
    let saved = std::fs::read(&pages).expect("read pages");
    assert_eq!(saved[12], 3, "lz4 in 64 KiB blocks (compression code 3)");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert!(
        cpus < 2 || img.join(format!("pages-{pid}.1.img")).is_file(),
        "96 MiB are written as two pages files"
    );
    let (body, len) = compressed_chunk(&saved).expect("a compressed chunk");
    let mut bad = saved.clone();
    bad[body + len / 2] ^= 0x01;
    std::fs::write(&pages, &bad).expect("write pages");
    let msg = refused(
        pid,
        restore(&img, &[]),
        "flipped byte in a compressed chunk",
    );
    assert!(msg.contains(&format!("pages-{pid}.img")), "{msg}");
    std::fs::write(&pages, &saved).expect("write pages");
    let restored = restore(&img, &[]).unwrap_or_else(|o| panic!("restore: {o:?}"));
    assert_eq!(restored, pid);
    Proc::adopt(restored, &v.log).go_and_expect_pass();
}

/// `dump --no-sync` leaves out the sync of the image (no `syncfs` span in the dump's
/// `STASIS_PROFILE` figures, where a default dump has one) and the image still restores
/// whole, compressed or not.
#[test]
fn no_sync_dump_skips_the_sync_and_round_trips() {
    let _serial = common::serial();
    require_privileged!("no_sync_dump_skips_the_sync_and_round_trips");
    let tmp = TempDir::new("store-no-sync");
    let cases: [&[&str]; 3] = [&[], &["--no-sync"], &["--no-sync", "--compress", "lz4"]];
    for (i, args) in cases.iter().enumerate() {
        let mut v = victim_in(&tmp, &format!("work{i}"));
        let img = tmp.join(format!("img{i}"));
        let mut cmd = common::dump_cmd(v.pid, &img, args);
        cmd.env("STASIS_PROFILE", "1");
        let out = common::start(&mut cmd).finish(common::STASIS_TIMEOUT);
        out.assert_ok("dump");
        v.wait_exit(common::EXIT_TIMEOUT);
        let synced = out.stderr.contains("profile: syncfs");
        assert_eq!(synced, args.is_empty(), "{args:?}: {}", out.stderr);
        let pid = restore(&img, &[]).unwrap_or_else(|o| panic!("{args:?}: restore: {o:?}"));
        assert_eq!(pid, v.pid);
        Proc::adopt(pid, &v.log).go_and_expect_pass();
    }
}

/// `dump --direct-io` of a victim with 96 MiB of memory onto the disk the tests run on: the
/// page data goes past the page cache (`direct write` spans in the `STASIS_PROFILE`
/// figures; none on tmpfs, which has no writeback to skip), the image is still synced
/// before success, and it restores with the victim's memory verified.
#[test]
fn direct_io_dump_round_trips() {
    let _serial = common::serial();
    require_privileged!("direct_io_dump_round_trips");
    let tmp = TempDir::new("store-direct-io");
    let work = tmp.join("work");
    std::fs::create_dir_all(&work).expect("mkdir work");
    let mut v = common::spawn_victim("memory", &["-s", "96"], &work);
    assert_eq!(v.wait_ready(), Start::Ready);
    let img = tmp.join("img");
    let mut cmd = common::dump_cmd(v.pid, &img, &["--direct-io"]);
    cmd.env("STASIS_PROFILE", "1");
    let out = common::start(&mut cmd).finish(common::STASIS_TIMEOUT);
    out.assert_ok("dump");
    v.wait_exit(common::EXIT_TIMEOUT);
    let fs = std::process::Command::new("stat")
        .args(["-f", "-c", "%T", s(&img)])
        .output()
        .expect("stat -f");
    let on_tmpfs = String::from_utf8_lossy(&fs.stdout).trim() == "tmpfs";
    let direct = out.stderr.contains("profile: direct write");
    assert_eq!(direct, !on_tmpfs, "{}", out.stderr);
    assert!(out.stderr.contains("profile: syncfs"), "{}", out.stderr);
    let pid = restore(&img, &[]).unwrap_or_else(|o| panic!("restore: {o:?}"));
    assert_eq!(pid, v.pid);
    Proc::adopt(pid, &v.log).go_and_expect_pass();
}
