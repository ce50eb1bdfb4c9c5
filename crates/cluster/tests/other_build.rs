//! A pool whose build has no worker host fails to build within its wait, with an error that
//! names the builds that did answer; a host of another build never takes its tasks.

polyexec_cluster::test_hook!();

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use polyexec_cluster::ClusterPool;

/// Kills and reaps the host when the test ends, however it ends.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_pool_with_only_hosts_of_another_build_is_refused_with_a_clear_error() {
    let url = common::url();
    let queue = common::unique_queue();
    let key = "5a".repeat(32);
    // Another build: this very program with one more byte, so another content fingerprint.
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other-build");
    let mut bytes = std::fs::read("/proc/self/exe").unwrap();
    bytes.extend_from_slice(b"another build");
    std::fs::write(&other, bytes).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _host = Host(
        Command::new(&other)
            .env("POLYEXEC_CLUSTER_WORKER", "1")
            .env("POLYEXEC_CLUSTER_URL", &url)
            .env("POLYEXEC_CLUSTER_KEY", &key)
            .env("POLYEXEC_CLUSTER_QUEUE", &queue)
            .env("POLYEXEC_CLUSTER_SLOTS", "1")
            .stdin(Stdio::null())
            .spawn()
            .expect("start a host of another build"),
    );

    let wait = Duration::from_secs(3);
    // The other host may still be starting at the first attempts: they fail all the same
    // (no host of this build), only without naming it. Bounded: 40 attempts.
    let mut last = String::new();
    for _ in 0..40 {
        let err = ClusterPool::builder()
            .url(&url)
            .key(&key)
            .queue(&queue)
            .worker_wait(wait)
            .build()
            .expect_err("no host of this build exists");
        last = err.to_string();
        assert!(last.contains("0 of 1 worker hosts of this build"), "{last}");
        if last.contains("hosts of other builds answered") {
            assert!(last.contains("the same executable file"), "{last}");
            return;
        }
    }
    panic!("the host of another build was never reported: {last}");
}
