//! AMF0, the encoding of RTMP's commands and metadata: the values a publisher sends and the
//! ones servers answer with.
//!
//! Reading is defensive, since every byte comes from the server: nesting is bounded, lengths
//! are checked against what is there, and a marker this module does not know ends the read
//! with an error rather than a guess.

use thiserror::Error;

/// How deep objects and arrays may nest in what is read.
const MAX_DEPTH: usize = 32;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0A;
const DATE: u8 = 0x0B;
const LONG_STRING: u8 = 0x0C;

/// One AMF0 value. Objects and ECMA arrays keep their keys in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// A string; written as a long string when it does not fit 16 bits.
    String(String),
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    /// Milliseconds since the epoch (the time zone field is read and dropped).
    Date(f64),
}

/// Why bytes are not AMF0.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Amf0Error {
    #[error("the AMF0 value ends early")]
    Truncated,
    #[error("unknown AMF0 marker 0x{0:02x}")]
    UnknownMarker(u8),
    #[error("AMF0 values nest deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("an AMF0 string is not UTF-8")]
    NotUtf8,
}

impl Value {
    /// A string value.
    pub fn string(text: impl Into<String>) -> Self {
        Self::String(text.into())
    }

    /// An object from `(key, value)` pairs.
    pub fn object<K: Into<String>>(pairs: impl IntoIterator<Item = (K, Value)>) -> Self {
        Self::Object(pairs.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// The value of `key`, if this is an object or ECMA array that has it.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Self::Object(pairs) | Self::EcmaArray(pairs) => {
                pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_number(&self) -> Option<f64> {
        match self {
            Self::Number(number) => Some(*number),
            _ => None,
        }
    }

    /// Appends the value's encoding to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Self::Number(number) => {
                out.push(NUMBER);
                out.extend_from_slice(&number.to_be_bytes());
            }
            Self::Boolean(value) => out.extend_from_slice(&[BOOLEAN, u8::from(*value)]),
            Self::String(text) if text.len() <= usize::from(u16::MAX) => {
                out.push(STRING);
                write_short_string(text, out);
            }
            Self::String(text) => {
                out.push(LONG_STRING);
                out.extend_from_slice(&(text.len() as u32).to_be_bytes());
                out.extend_from_slice(text.as_bytes());
            }
            Self::Object(pairs) => {
                out.push(OBJECT);
                write_pairs(pairs, out);
            }
            Self::Null => out.push(NULL),
            Self::Undefined => out.push(UNDEFINED),
            Self::EcmaArray(pairs) => {
                out.push(ECMA_ARRAY);
                out.extend_from_slice(&(pairs.len() as u32).to_be_bytes());
                write_pairs(pairs, out);
            }
            Self::StrictArray(values) => {
                out.push(STRICT_ARRAY);
                out.extend_from_slice(&(values.len() as u32).to_be_bytes());
                for value in values {
                    value.write(out);
                }
            }
            Self::Date(millis) => {
                out.push(DATE);
                out.extend_from_slice(&millis.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
        }
    }

    /// Reads one value from the front of `input`, advancing it.
    pub fn read(input: &mut &[u8]) -> Result<Self, Amf0Error> {
        read_value(input, 0)
    }

    /// Reads values until `input` is empty (a command's arguments).
    pub fn read_all(mut input: &[u8]) -> Result<Vec<Self>, Amf0Error> {
        let mut values = Vec::new();
        while !input.is_empty() {
            values.push(read_value(&mut input, 0)?);
        }
        Ok(values)
    }
}

/// Encodes `values` one after another (a command or a data message).
pub fn encode(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for value in values {
        value.write(&mut out);
    }
    out
}

fn write_short_string(text: &str, out: &mut Vec<u8>) {
    // Keys longer than 16 bits are cut: no AMF0 encoding can carry them.
    let bytes = &text.as_bytes()[..text.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn write_pairs(pairs: &[(String, Value)], out: &mut Vec<u8>) {
    for (key, value) in pairs {
        write_short_string(key, out);
        value.write(out);
    }
    out.extend_from_slice(&[0, 0, OBJECT_END]);
}

fn take<'a>(input: &mut &'a [u8], length: usize) -> Result<&'a [u8], Amf0Error> {
    if input.len() < length {
        return Err(Amf0Error::Truncated);
    }
    let (head, rest) = input.split_at(length);
    *input = rest;
    Ok(head)
}

fn read_u16(input: &mut &[u8]) -> Result<u16, Amf0Error> {
    Ok(u16::from_be_bytes(take(input, 2)?.try_into().unwrap()))
}

fn read_u32(input: &mut &[u8]) -> Result<u32, Amf0Error> {
    Ok(u32::from_be_bytes(take(input, 4)?.try_into().unwrap()))
}

fn read_f64(input: &mut &[u8]) -> Result<f64, Amf0Error> {
    Ok(f64::from_be_bytes(take(input, 8)?.try_into().unwrap()))
}

fn read_utf8(input: &mut &[u8], length: usize) -> Result<String, Amf0Error> {
    let bytes = take(input, length)?;
    String::from_utf8(bytes.to_vec()).map_err(|_| Amf0Error::NotUtf8)
}

fn read_value(input: &mut &[u8], depth: usize) -> Result<Value, Amf0Error> {
    if depth > MAX_DEPTH {
        return Err(Amf0Error::TooDeep);
    }
    let marker = *take(input, 1)?.first().unwrap();
    Ok(match marker {
        NUMBER => Value::Number(read_f64(input)?),
        BOOLEAN => Value::Boolean(take(input, 1)?[0] != 0),
        STRING => {
            let length = read_u16(input)?;
            Value::String(read_utf8(input, usize::from(length))?)
        }
        LONG_STRING => {
            let length = read_u32(input)?;
            Value::String(read_utf8(input, length as usize)?)
        }
        OBJECT => Value::Object(read_pairs(input, depth)?),
        NULL => Value::Null,
        UNDEFINED => Value::Undefined,
        ECMA_ARRAY => {
            // The count is a hint that servers get wrong; the end marker is what counts.
            read_u32(input)?;
            Value::EcmaArray(read_pairs(input, depth)?)
        }
        STRICT_ARRAY => {
            let count = read_u32(input)? as usize;
            // Every value takes at least one byte: a count beyond what is left is a lie.
            if count > input.len() {
                return Err(Amf0Error::Truncated);
            }
            let mut values = Vec::with_capacity(count);
            for _ in 0..count {
                values.push(read_value(input, depth + 1)?);
            }
            Value::StrictArray(values)
        }
        DATE => {
            let millis = read_f64(input)?;
            take(input, 2)?;
            Value::Date(millis)
        }
        other => return Err(Amf0Error::UnknownMarker(other)),
    })
}

fn read_pairs(input: &mut &[u8], depth: usize) -> Result<Vec<(String, Value)>, Amf0Error> {
    let mut pairs = Vec::new();
    loop {
        let length = read_u16(input)?;
        if length == 0 && input.first() == Some(&OBJECT_END) {
            take(input, 1)?;
            return Ok(pairs);
        }
        let key = read_utf8(input, usize::from(length))?;
        pairs.push((key, read_value(input, depth + 1)?));
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_connect_object_of_the_enhanced_rtmp_spec_encodes_byte_for_byte() {
        // The spec's example for `fourCcList` (enhanced-rtmp-v2, connect command).
        let list = Value::StrictArray(
            ["hvc1", "av01", "vp09", "Opus"]
                .into_iter()
                .map(Value::string)
                .collect(),
        );
        let mut out = Vec::new();
        list.write(&mut out);
        assert_eq!(
            out,
            [
                0x0A, 0, 0, 0, 4, 2, 0, 4, b'h', b'v', b'c', b'1', 2, 0, 4, b'a', b'v', b'0', b'1',
                2, 0, 4, b'v', b'p', b'0', b'9', 2, 0, 4, b'O', b'p', b'u', b's'
            ]
        );
    }

    #[test]
    fn a_servers_connect_answer_is_read() {
        // nginx-rtmp's _result to connect, as it sends it.
        let mut bytes = Vec::new();
        for value in [
            Value::string("_result"),
            Value::Number(1.0),
            Value::object([
                ("fmsVer", Value::string("FMS/3,0,1,123")),
                ("capabilities", Value::Number(31.0)),
            ]),
            Value::object([
                ("level", Value::string("status")),
                ("code", Value::string("NetConnection.Connect.Success")),
                ("description", Value::string("Connection succeeded.")),
                ("objectEncoding", Value::Number(0.0)),
            ]),
        ] {
            value.write(&mut bytes);
        }
        let values = Value::read_all(&bytes).unwrap();
        assert_eq!(values[0].as_str(), Some("_result"));
        assert_eq!(
            values[3].get("code").and_then(Value::as_str),
            Some("NetConnection.Connect.Success")
        );
    }

    #[test]
    fn hostile_input_is_refused_without_panicking_or_allocating_what_it_claims() {
        // A strict array claiming four billion elements.
        assert_eq!(
            Value::read(&mut &[0x0A, 0xFF, 0xFF, 0xFF, 0xFF][..]),
            Err(Amf0Error::Truncated)
        );
        // Objects nested past the bound.
        let mut deep = Vec::new();
        for _ in 0..100 {
            deep.extend_from_slice(&[OBJECT, 0, 1, b'k']);
        }
        assert_eq!(Value::read(&mut &deep[..]), Err(Amf0Error::TooDeep));
        assert_eq!(
            Value::read(&mut &[0x11][..]),
            Err(Amf0Error::UnknownMarker(0x11))
        );
    }

    fn values() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<f64>()
                .prop_filter("NaN never equals itself", |n| !n.is_nan())
                .prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,40}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let pairs = prop::collection::vec(("[a-zA-Z]{1,12}", inner.clone()), 0..6);
            prop_oneof![
                pairs.clone().prop_map(Value::Object),
                pairs.prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..6).prop_map(Value::StrictArray),
            ]
        })
    }

    proptest! {
        #[test]
        fn every_value_reads_back_as_written(value in values()) {
            let mut bytes = Vec::new();
            value.write(&mut bytes);
            let mut input = &bytes[..];
            prop_assert_eq!(Value::read(&mut input).unwrap(), value);
            prop_assert!(input.is_empty());
        }

        #[test]
        fn any_bytes_read_to_a_value_or_an_error(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = Value::read_all(&bytes);
        }
    }
}
