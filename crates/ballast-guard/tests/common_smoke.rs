//! The shared test helpers work: a backend answers and names itself.
mod common;

#[test]
fn a_backend_answers_with_its_name() {
    let backend = common::Backend::start("b1");
    let (status, body) = common::http_get(backend.addr, "/");
    assert_eq!(status, 200);
    assert_eq!(body, "b1\n");
    assert_eq!(backend.served.load(std::sync::atomic::Ordering::Relaxed), 1);
}
