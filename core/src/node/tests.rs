use super::*;
use serde::Deserialize;

#[derive(Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Example {
    path: String,
    #[serde(default)]
    follow: bool,
    mode: Mode,
    #[serde(default)]
    items: Vec<u32>,
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
enum Mode {
    Append,
    PerFragment,
}

fn parse(yaml: &str) -> ConfigNode {
    serde_saphyr::from_str(yaml).expect("valid yaml")
}

#[test]
fn deserializes_structs_enums_and_sequences() {
    let node = parse("path: /tmp/x\nfollow: true\nmode: per_fragment\nitems: [1, 2]\n");
    let example: Example = node.deserialize_into().unwrap();
    assert_eq!(
        example,
        Example {
            path: "/tmp/x".into(),
            follow: true,
            mode: Mode::PerFragment,
            items: vec![1, 2],
        }
    );
}

#[test]
fn unknown_field_names_its_line_and_suggests() {
    let node = parse("path: /tmp/x\nmode: append\nfolow: true\n");
    let error = node.deserialize_into::<Example>().unwrap_err();
    assert_eq!(error.location.map(|l| l.line), Some(3));
    assert!(error.message.contains("unknown field `folow`"), "{error}");
    assert!(error.message.contains("did you mean `follow`"), "{error}");
}

#[test]
fn wrong_value_names_the_field_and_line() {
    let node = parse("path: /tmp/x\n\nmode: apend\n");
    let error = node.deserialize_into::<Example>().unwrap_err();
    assert_eq!(error.field().as_deref(), Some("mode"));
    assert_eq!(error.location.map(|l| l.line), Some(3));
    assert!(error.message.contains("did you mean `append`"), "{error}");
}

#[test]
fn nested_sequence_errors_name_the_index() {
    let node = parse("path: x\nmode: append\nitems:\n  - 1\n  - nope\n");
    let error = node.deserialize_into::<Example>().unwrap_err();
    assert_eq!(error.field().as_deref(), Some("items.[1]"));
    assert_eq!(error.location.map(|l| l.line), Some(5));
}
