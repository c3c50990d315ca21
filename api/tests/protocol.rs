//! `Protocol` spelled as in the spec: `as_str` and `FromStr` agree with serde.

use flint_api::Protocol;
use flint_api::function::UnknownProtocol;

#[test]
fn as_str_round_trips_and_matches_serde() {
    for p in [Protocol::Http1, Protocol::H2c] {
        assert_eq!(p.as_str().parse::<Protocol>(), Ok(p));
        assert_eq!(
            serde_json::to_value(p).unwrap(),
            serde_json::json!(p.as_str())
        );
    }
}

#[test]
fn unknown_protocol_names_the_value() {
    let err = "http2".parse::<Protocol>().unwrap_err();
    assert_eq!(err, UnknownProtocol("http2".to_owned()));
    assert!(err.to_string().contains("\"http2\""));
}
