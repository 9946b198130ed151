//! Human-readable sizes ("256KiB", "8.8MB") and durations ("2s", "500ms") for configs and flags.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A number of bytes, written as a plain integer or with a unit.
///
/// Decimal units (`KB`, `MB`, `GB`, `TB`) are powers of 1000 and binary units (`KiB`, `MiB`,
/// `GiB`, `TiB`) powers of 1024, so `8.8MB` is 8,800,000 bytes and `256KiB` is 262,144. Units are
/// case-insensitive; a space between number and unit is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size in bytes.
    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// `n` KiB (1024 bytes each).
    pub const fn kib(n: u64) -> Self {
        Self(n * 1024)
    }

    /// `n` MiB.
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    /// `n` GiB.
    pub const fn gib(n: u64) -> Self {
        Self(n * 1024 * 1024 * 1024)
    }
}

/// Why a size or duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} `{input}`: {reason}")]
pub struct UnitParseError {
    what: &'static str,
    input: String,
    reason: String,
}

const SIZE_UNITS: &[(&str, u64)] = &[
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("tb", 1_000_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
    ("tib", 1 << 40),
];

impl FromStr for ByteSize {
    type Err = UnitParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| UnitParseError {
            what: "size",
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = input.trim();
        let split = trimmed
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(split);
        let unit = unit.trim().to_ascii_lowercase();
        let multiplier = if unit.is_empty() {
            1
        } else {
            SIZE_UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, multiplier)| *multiplier)
                .ok_or_else(|| error("unknown unit; use B, KB, MB, GB, KiB, MiB or GiB"))?
        };
        // Integers are computed exactly; only fractional inputs go through f64.
        if let Ok(whole) = number.parse::<u64>() {
            return whole
                .checked_mul(multiplier)
                .map(ByteSize)
                .ok_or_else(|| error("too large"));
        }
        let value: f64 = number
            .parse()
            .map_err(|_| error("expected a number such as 256KiB or 8.8MB"))?;
        let bytes = (value * multiplier as f64).round();
        if !bytes.is_finite() || bytes >= u64::MAX as f64 {
            return Err(error("too large"));
        }
        Ok(ByteSize(bytes as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, multiplier) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= multiplier && self.0.is_multiple_of(multiplier) {
                return write!(f, "{}{name}", self.0 / multiplier);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size such as 1048576, 256KiB or 8.8MB")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": ["string", "integer"],
            "description": "A size: bytes, or a number with B, KB, MB, GB, KiB, MiB or GiB",
            "examples": ["256KiB", "8.8MB"]
        })
    }
}

/// A duration written as `500ms`, `2s`, `1m 30s` (humantime syntax).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `millis` milliseconds.
    pub const fn from_millis(millis: u64) -> Self {
        Self(Duration::from_millis(millis))
    }

    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        Self(Duration::from_secs(secs))
    }

    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }

    /// `duration` to the millisecond, for messages: `12s 345ms` rather than nanoseconds.
    pub fn millis(duration: Duration) -> Self {
        Self(Duration::from_millis(duration.as_millis() as u64))
    }
}

impl FromStr for HumanDuration {
    type Err = UnitParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(input.trim())
            .map(HumanDuration)
            .map_err(|error| {
                // humantime counts characters ("expected number at 0"); say it in words.
                let problem = match error {
                    humantime::DurationError::NumberExpected(_)
                    | humantime::DurationError::InvalidCharacter(_) => {
                        "it is not a number followed by a unit".to_owned()
                    }
                    humantime::DurationError::Empty => "it is empty".to_owned(),
                    other => other.to_string(),
                };
                UnitParseError {
                    what: "duration",
                    input: input.to_owned(),
                    reason: format!("{problem}; write it like 500ms, 2s or 1m"),
                }
            })
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<str>::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "description": "A duration such as 500ms, 2s or 1m",
            "examples": ["500ms", "2s"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_units() {
        assert_eq!("256KiB".parse(), Ok(ByteSize(262_144)));
        assert_eq!("8.8MB".parse(), Ok(ByteSize(8_800_000)));
        assert_eq!("1 GiB".parse(), Ok(ByteSize(1 << 30)));
        assert_eq!("4096".parse(), Ok(ByteSize(4096)));
        assert_eq!("1mib".parse(), Ok(ByteSize(1 << 20)));
        assert!("12 bananas".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn sizes_display_in_the_largest_exact_binary_unit() {
        assert_eq!(ByteSize::kib(256).to_string(), "256KiB");
        assert_eq!(ByteSize::mib(1).to_string(), "1MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    #[test]
    fn durations_parse_humantime_syntax() {
        assert_eq!("500ms".parse(), Ok(HumanDuration::from_millis(500)));
        assert_eq!("2s".parse(), Ok(HumanDuration::from_secs(2)));
        assert!("soon".parse::<HumanDuration>().is_err());
    }
}
