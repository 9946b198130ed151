//! What plays while upstream is late, as plugins that pace with filler take it in their
//! options (`filler: generate | none | PATH`). The stages that make a stream's media make and
//! play the clip; a sink that implies such a stage passes the option on.

use std::fmt;
use std::path::PathBuf;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// What plays while upstream is late (`filler`): `generate`, `none`, or the path of a slate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FillerSource {
    /// Black video and silence made by ffmpeg to match the stream.
    #[default]
    Generate,
    /// No filler: the output waits for the next fragment.
    None,
    /// A slate (any file ffmpeg reads, e.g. MP4), converted once to match the stream.
    File(PathBuf),
}

impl fmt::Display for FillerSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Generate => f.write_str("generate"),
            Self::None => f.write_str("none"),
            Self::File(path) => write!(f, "{}", path.display()),
        }
    }
}

impl<'de> Deserialize<'de> for FillerSource {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Ok(match text.as_str() {
            "generate" => Self::Generate,
            "none" => Self::None,
            "" => return Err(de::Error::custom("write generate, none or a file's path")),
            path => Self::File(PathBuf::from(path)),
        })
    }
}

impl Serialize for FillerSource {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for FillerSource {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FillerSource".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "generate, none, or the path of a slate file",
            "examples": ["generate", "none", "/srv/slate.mp4"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_reads_generate_none_or_a_path() {
        let read = |text: &str| serde_json::from_value::<FillerSource>(text.into());
        assert_eq!(read("generate").unwrap(), FillerSource::Generate);
        assert_eq!(read("none").unwrap(), FillerSource::None);
        assert_eq!(
            read("/srv/slate.mp4").unwrap(),
            FillerSource::File("/srv/slate.mp4".into())
        );
        assert!(read("").is_err());
    }
}
