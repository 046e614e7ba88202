//! The fields a type reads when serde deserializes it, found by deserializing it from a
//! probe that hands every struct all the fields its `Deserialize` asks for (renames
//! included) and follows options, lists and nested structs. A field added to one of
//! forgehand's models is therefore checked without anyone listing it.

use serde::de::value::{BorrowedStrDeserializer, Error};
use serde::de::{self, DeserializeOwned, DeserializeSeed, MapAccess, SeqAccess, Visitor};

/// A field read from a JSON object, with the fields read inside it (through lists too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub fields: Vec<Field>,
}

impl Field {
    /// A field and what is read inside it, for hand-made cases.
    pub fn new(name: &str, fields: Vec<Field>) -> Field {
        Field { name: name.to_owned(), fields }
    }
}

/// The fields `T` reads from the object it is deserialized from.
pub fn fields_of<T: DeserializeOwned>() -> Vec<Field> {
    let mut found = Vec::new();
    T::deserialize(Probe { found: &mut found }).expect("the probe satisfies every model");
    found
}

/// Answers every request of a `Deserialize` with an empty value, recording struct fields.
struct Probe<'a> {
    found: &'a mut Vec<Field>,
}

macro_rules! empty {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit($($value)?)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = Error;

    // A `serde_json::Value` (any JSON) is read whole: a leaf.
    empty! {
        deserialize_any => visit_unit(),
        deserialize_ignored_any => visit_unit(),
        deserialize_unit => visit_unit(),
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0), deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0), deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0), deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0), deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0), deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char(' '),
        deserialize_str => visit_str(""), deserialize_string => visit_str(""),
        deserialize_identifier => visit_str(""),
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// A list reads what one of its items reads.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(OneItem { probe: Some(self) })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(EveryField { fields, next: 0, found: self.found })
    }

    serde::forward_to_deserialize_any! {
        bytes byte_buf unit_struct tuple tuple_struct map enum
    }
}

struct OneItem<'a> {
    probe: Option<Probe<'a>>,
}

impl<'de> SeqAccess<'de> for OneItem<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Error> {
        self.probe.take().map(|probe| seed.deserialize(probe)).transpose()
    }
}

struct EveryField<'a> {
    fields: &'static [&'static str],
    next: usize,
    found: &'a mut Vec<Field>,
}

impl<'de> MapAccess<'de> for EveryField<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some(name) = self.fields.get(self.next) else { return Ok(None) };
        seed.deserialize(BorrowedStrDeserializer::<Error>::new(name)).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let name = self.fields[self.next];
        self.next += 1;
        let mut inner = Vec::new();
        let value = seed.deserialize(Probe { found: &mut inner })?;
        self.found.push(Field::new(name, inner));
        Ok(value)
    }
}
