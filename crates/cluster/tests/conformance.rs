//! The backend conformance suite, run against a cluster pool with two local worker hosts of one
//! slot each, on this test binary's private nats-server.

// Local workers are this test binary started again: the hook makes them serve.
polyexec_cluster::test_hook!();

mod common;

polyexec_core::conformance_suite!(|| common::pool(2));
