//! A [`ConfigNode`] as a serde deserializer: plugin configs deserialize from it, and each error
//! carries the location and field path of the value it is about.

use serde::de::{self, value::StrDeserializer, IntoDeserializer};

use super::{closest_name, ConfigKey, ConfigNode, NodeError, NodeValue};

/// Deserializer methods that read a string node holding a number or boolean as that value, and
/// everything else as `deserialize_any` would.
macro_rules! scalar_from_string {
    ($($method:ident => $visit:ident: $type:ty,)*) => {
        $(
            fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
                if let NodeValue::String(text) = &self.value {
                    if let Ok(value) = text.parse::<$type>() {
                        return visitor
                            .$visit(value)
                            .map_err(|error: NodeError| error.at(self.location));
                    }
                }
                de::Deserializer::deserialize_any(self, visitor)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for &'de ConfigNode {
    type Error = NodeError;

    fn deserialize_any<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        let result = match &self.value {
            NodeValue::Null => visitor.visit_unit(),
            NodeValue::Bool(value) => visitor.visit_bool(*value),
            NodeValue::Integer(value) => visitor.visit_i64(*value),
            NodeValue::Unsigned(value) => visitor.visit_u64(*value),
            NodeValue::Float(value) => visitor.visit_f64(*value),
            NodeValue::String(value) => visitor.visit_borrowed_str(value),
            NodeValue::Sequence(items) => visitor.visit_seq(SequenceAccess {
                items: items.iter().enumerate(),
            }),
            NodeValue::Mapping(entries) => visitor.visit_map(MappingAccess {
                entries: entries.iter(),
                current: None,
            }),
        };
        result.map_err(|error| error.at(self.location))
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, NodeError> {
        match self.value {
            NodeValue::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, NodeError> {
        let NodeValue::String(variant) = &self.value else {
            let error: NodeError = de::Error::invalid_type(self.unexpected(), &"a string");
            return Err(error.at(self.location));
        };
        let deserializer: StrDeserializer<'_, NodeError> = variant.as_str().into_deserializer();
        deserializer
            .deserialize_enum("", variants, visitor)
            .map_err(|error| {
                let mut error = error.at(self.location);
                if let Some(suggestion) = closest_name(variant, variants.iter().copied()) {
                    error
                        .message
                        .push_str(&format!(" (did you mean `{suggestion}`?)"));
                }
                error
            })
    }

    // A number or boolean may come as a string: `${PORT}` in a pipeline file is replaced after
    // parsing, so its value is a string whatever it looks like.
    scalar_from_string! {
        deserialize_bool => visit_bool: bool,
        deserialize_i8 => visit_i8: i8,
        deserialize_i16 => visit_i16: i16,
        deserialize_i32 => visit_i32: i32,
        deserialize_i64 => visit_i64: i64,
        deserialize_u8 => visit_u8: u8,
        deserialize_u16 => visit_u16: u16,
        deserialize_u32 => visit_u32: u32,
        deserialize_u64 => visit_u64: u64,
        deserialize_f32 => visit_f32: f32,
        deserialize_f64 => visit_f64: f64,
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct SequenceAccess<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, ConfigNode>>,
}

impl<'de> de::SeqAccess<'de> for SequenceAccess<'de> {
    type Error = NodeError;

    fn next_element_seed<T: de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, NodeError> {
        match self.items.next() {
            Some((index, item)) => seed
                .deserialize(item)
                .map(Some)
                .map_err(|error| error.within(&format!("[{index}]")).at(item.location)),
            None => Ok(None),
        }
    }
}

struct MappingAccess<'a> {
    entries: std::slice::Iter<'a, (ConfigKey, ConfigNode)>,
    current: Option<&'a (ConfigKey, ConfigNode)>,
}

impl<'de> de::MapAccess<'de> for MappingAccess<'de> {
    type Error = NodeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, NodeError> {
        let Some(entry) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some(entry);
        let key: StrDeserializer<'_, NodeError> = entry.0.name.as_str().into_deserializer();
        seed.deserialize(key)
            .map(Some)
            .map_err(|error| error.at(entry.0.location))
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, NodeError> {
        let (key, value) = self
            .current
            .take()
            .expect("serde calls next_value_seed only after next_key_seed");
        seed.deserialize(value)
            .map_err(|error| error.within(&key.name).at(value.location))
    }
}
