//! Helpers shared by the facade's tests.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use polyexec::Backend;

/// The backends compiled in that can be built here: every one, the cluster backend only when
/// `POLYEXEC_CLUSTER_URL` names a NATS server (CI starts one; `source scripts/nats.sh &&
/// nats_start` does it by hand). Without one the cluster backend is left out with a note,
/// unless `POLYEXEC_REQUIRE_NATS=1` (CI sets it), which makes that a failure.
pub(crate) fn buildable_backends() -> Vec<Backend> {
    Backend::all()
        .iter()
        .copied()
        .filter(|backend| backend.name() != "cluster" || cluster_server_given())
        .collect()
}

fn cluster_server_given() -> bool {
    if std::env::var_os("POLYEXEC_CLUSTER_URL").is_some() {
        return true;
    }
    if std::env::var("POLYEXEC_REQUIRE_NATS").is_ok_and(|v| v == "1") {
        panic!("POLYEXEC_REQUIRE_NATS=1 but POLYEXEC_CLUSTER_URL is not set");
    }
    eprintln!(
        "leaving the cluster backend out: POLYEXEC_CLUSTER_URL is not set \
         (`source scripts/nats.sh && nats_start` sets it)"
    );
    false
}
