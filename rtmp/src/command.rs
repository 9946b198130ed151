//! AMF0 command messages (type 20): what a publisher sends (`connect`, `releaseStream`,
//! `FCPublish`, `createStream`, `publish`, `FCUnpublish`, `deleteStream`) and the answers it
//! reads (`_result`, `_error`, `onStatus`).

use bytes::Bytes;

use crate::amf0::{self, Amf0Error, Value};
use crate::chunk::Message;

/// The message type of an AMF0 command.
pub const COMMAND: u8 = 20;
/// The message type of AMF0 data (`@setDataFrame`, `onMetaData`).
pub const DATA: u8 = 18;

/// What `connect` says of the client.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectRequest {
    pub app: String,
    pub tc_url: String,
    /// The enhanced-RTMP codecs the stream uses (`hvc1`, `av01`, `vp09`, `Opus`); empty for a
    /// legacy H.264/AAC stream, whose `connect` then carries nothing enhanced.
    pub fourcc_list: Vec<String>,
}

impl ConnectRequest {
    /// The command object: what FFmpeg and OBS send, plus enhanced RTMP's lists when the
    /// stream needs them (`fourCcList` and the v2 info maps, which servers accept either of).
    fn command_object(&self) -> Value {
        let mut pairs = vec![
            ("app".to_owned(), Value::string(&self.app)),
            ("type".to_owned(), Value::string("nonprivate")),
            (
                "flashVer".to_owned(),
                Value::string("FMLE/3.0 (compatible; streampub)"),
            ),
            ("tcUrl".to_owned(), Value::string(&self.tc_url)),
        ];
        if !self.fourcc_list.is_empty() {
            let list = self.fourcc_list.iter().map(Value::string).collect();
            pairs.push(("fourCcList".to_owned(), Value::StrictArray(list)));
            // CanEncode (0x02): this side sends them.
            let (video, audio): (Vec<_>, Vec<_>) = self
                .fourcc_list
                .iter()
                .partition(|fourcc| fourcc.as_str() != "Opus" && fourcc.as_str() != "mp4a");
            for (key, codecs) in [("videoFourCcInfoMap", video), ("audioFourCcInfoMap", audio)] {
                if !codecs.is_empty() {
                    let map = codecs
                        .into_iter()
                        .map(|fourcc| (fourcc.clone(), Value::Number(2.0)))
                        .collect();
                    pairs.push((key.to_owned(), Value::Object(map)));
                }
            }
        }
        Value::Object(pairs)
    }
}

/// A command to send: its name, transaction id and arguments after the command object.
pub fn command(name: &str, transaction: f64, object: Value, arguments: &[Value]) -> Message {
    let mut values = vec![Value::string(name), Value::Number(transaction), object];
    values.extend_from_slice(arguments);
    Message {
        type_id: COMMAND,
        stream_id: 0,
        timestamp: 0,
        payload: Bytes::from(amf0::encode(&values)),
    }
}

pub fn connect(request: &ConnectRequest, transaction: f64) -> Message {
    command("connect", transaction, request.command_object(), &[])
}

/// An answer the server sent to a command, or a status.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerCommand {
    /// `_result` for a transaction, with its arguments after the command object.
    Result {
        transaction: f64,
        object: Value,
        arguments: Vec<Value>,
    },
    /// `_error` for a transaction: its information object says why.
    Error { transaction: f64, info: Value },
    /// `onStatus`: level (`status`, `warning`, `error`), code and description.
    Status(Status),
    /// Another command (`onBWDone`, `onFCPublish`, …): read and left.
    Other(String),
}

/// An `onStatus` information object, or a `_error`'s.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    pub level: String,
    pub code: String,
    pub description: String,
    /// `NetConnection.Connect.ReconnectRequest` may give where to go.
    pub tc_url: Option<String>,
}

impl Status {
    pub fn from_info(info: &Value) -> Self {
        let text = |key: &str| {
            info.get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        Self {
            level: text("level"),
            code: text("code"),
            description: text("description"),
            tc_url: info.get("tcUrl").and_then(Value::as_str).map(str::to_owned),
        }
    }

    pub fn is_error(&self) -> bool {
        self.level == "error"
    }
}

impl ServerCommand {
    /// Reads a command message (AMF0; type 20).
    pub fn read(payload: &[u8]) -> Result<Self, Amf0Error> {
        let mut values = Value::read_all(payload)?.into_iter();
        let name = match values.next() {
            Some(Value::String(name)) => name,
            _ => return Ok(Self::Other(String::new())),
        };
        let transaction = values.next().and_then(|v| v.as_number()).unwrap_or(0.0);
        let object = values.next().unwrap_or(Value::Null);
        let arguments: Vec<Value> = values.collect();
        Ok(match name.as_str() {
            "_result" => Self::Result {
                transaction,
                object,
                arguments,
            },
            // The information object is the first argument; some servers put it in the
            // command object's place.
            "_error" => Self::Error {
                transaction,
                info: arguments.into_iter().next().unwrap_or(object),
            },
            "onStatus" => {
                let info = arguments
                    .into_iter()
                    .next()
                    .filter(|info| info.get("code").is_some())
                    .unwrap_or(object);
                Self::Status(Status::from_info(&info))
            }
            _ => Self::Other(name),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_legacy_connect_carries_nothing_enhanced_and_an_hevc_one_lists_its_codec() {
        let mut request = ConnectRequest {
            app: "live".into(),
            tc_url: "rtmp://127.0.0.1:1935/live".into(),
            fourcc_list: Vec::new(),
        };
        let values = Value::read_all(&connect(&request, 1.0).payload).unwrap();
        assert_eq!(values[0], Value::string("connect"));
        assert_eq!(values[2].get("app"), Some(&Value::string("live")));
        assert_eq!(values[2].get("fourCcList"), None);
        request.fourcc_list = vec!["hvc1".into(), "Opus".into()];
        let values = Value::read_all(&connect(&request, 1.0).payload).unwrap();
        assert_eq!(
            values[2].get("fourCcList"),
            Some(&Value::StrictArray(vec![
                Value::string("hvc1"),
                Value::string("Opus")
            ]))
        );
        assert_eq!(
            values[2].get("videoFourCcInfoMap"),
            Some(&Value::object([("hvc1", Value::Number(2.0))]))
        );
        assert_eq!(
            values[2].get("audioFourCcInfoMap"),
            Some(&Value::object([("Opus", Value::Number(2.0))]))
        );
    }

    #[test]
    fn on_status_and_error_answers_are_read_with_their_words() {
        let payload = amf0::encode(&[
            Value::string("onStatus"),
            Value::Number(0.0),
            Value::Null,
            Value::object([
                ("level", Value::string("error")),
                ("code", Value::string("NetStream.Publish.BadName")),
                ("description", Value::string("Already publishing")),
            ]),
        ]);
        let ServerCommand::Status(status) = ServerCommand::read(&payload).unwrap() else {
            panic!("not a status");
        };
        assert!(status.is_error());
        assert_eq!(status.code, "NetStream.Publish.BadName");
        assert_eq!(status.description, "Already publishing");
        let payload = amf0::encode(&[
            Value::string("_error"),
            Value::Number(1.0),
            Value::Null,
            Value::object([
                ("level", Value::string("error")),
                ("code", Value::string("NetConnection.Connect.Rejected")),
            ]),
        ]);
        assert!(matches!(
            ServerCommand::read(&payload).unwrap(),
            ServerCommand::Error { transaction, .. } if transaction == 1.0
        ));
    }
}
