//! The API key falls back to `IMGGO_API_KEY`. One test in its own binary: it changes the
//! process environment.

use imggo_core::Error;
use imggo_http::{Client, API_KEY_ENV};

#[test]
fn key_from_the_environment_or_a_clear_error() {
    std::env::set_var(API_KEY_ENV, "imggo_from_env_value");
    let c = Client::builder()
        .base_url("http://127.0.0.1:1/api")
        .build()
        .unwrap();
    assert!(!format!("{c:?}").contains("from_env_value"));

    std::env::remove_var(API_KEY_ENV);
    let e = Client::builder().build().unwrap_err();
    assert!(
        matches!(&e, Error::Config(m) if m.contains(API_KEY_ENV)),
        "{e:?}"
    );

    // An explicit key wins and needs no environment.
    assert!(Client::builder().api_key("k").build().is_ok());
}
