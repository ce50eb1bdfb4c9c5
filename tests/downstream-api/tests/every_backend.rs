//! The second-day API, unchanged, on thread, coroutine and subprocess.

polyexec::test_hook!();

#[test]
fn thread() {
    downstream_api::exercise(&polyexec::Backend::from_name("thread").unwrap().build().unwrap());
}

#[test]
fn coroutine() {
    downstream_api::exercise(&polyexec::Backend::from_name("coroutine").unwrap().build().unwrap());
}

#[test]
fn subprocess() {
    downstream_api::exercise(&polyexec::Backend::from_name("subprocess").unwrap().build().unwrap());
}
