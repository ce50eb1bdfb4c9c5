//! A descriptor the program holds without close-on-exec (opened by C code, or passed on by a
//! service manager) is not kept open by the workers: they close it first thing. Otherwise a
//! pipe's reader would never see end of stream while a worker lives.

polyexec_subprocess::test_hook!();

mod common;

use std::io::{ErrorKind, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use polyexec_core::Executor;
use rustix::io::FdFlags;

/// What descriptor `fd` of this process refers to, such as `socket:[81234]`.
fn target(fd: i32) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    Some(link.to_string_lossy().into_owned())
}

/// `true` if the process that runs this has a descriptor referring to `object` (a descriptor's
/// number may be reused by something else, so the object is what is compared).
fn holds(object: String) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .any(|fd| target(fd).as_deref() == Some(object.as_str()))
}

#[test]
fn workers_do_not_keep_descriptors_inherited_by_accident() {
    let (mut reader, writer) = UnixStream::pair().expect("socket pair");
    // What a C library's `socketpair` or `pipe` without the close-on-exec flag gives.
    rustix::io::fcntl_setfd(&writer, FdFlags::empty()).expect("clear close-on-exec");
    let object = target(writer.as_raw_fd()).expect("the writer's descriptor");
    assert!(holds(object.clone()));

    let pool = common::pool(2);
    // Every worker has started and greeted the pool, so each has run its start-up.
    let seen: Vec<bool> = pool
        .spawn_all(vec![object.clone(); 8], holds)
        .into_iter()
        .map(|h| h.join().expect("task"))
        .collect();
    assert_eq!(seen, vec![false; 8], "a worker kept {object} open");
    assert!(holds(object), "the program's own descriptor must stay open");

    // The case that matters: the last writer is gone, so the reader sees end of stream, while
    // the workers are alive. (The time limit only turns a hang into a failure.)
    drop(writer);
    reader
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let mut byte = [0u8; 1];
    match reader.read(&mut byte) {
        Ok(0) => {}
        Ok(n) => panic!("read {n} bytes from a stream nobody wrote to"),
        Err(err) if err.kind() == ErrorKind::WouldBlock || err.kind() == ErrorKind::TimedOut => {
            panic!("no end of stream: a worker still holds the write end")
        }
        Err(err) => panic!("read failed: {err}"),
    }
    assert_eq!(pool.spawn(1u8, |x: u8| x + 1).join(), Ok(2));
    pool.shutdown();
}
