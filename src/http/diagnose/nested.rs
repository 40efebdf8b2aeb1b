//! A JSON array of numbers of any depth, read straight into one flat `Vec<f32>` and its
//! shape, refusing ragged, empty, mixed and non-finite arrays with the position named.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq)]
pub struct NestedArray {
    /// Row-major values.
    pub values: Vec<f32>,
    /// Length of every axis, outermost first.
    pub shape: Vec<usize>,
}

impl<'de> Deserialize<'de> for NestedArray {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut builder = Builder::default();
        Level { builder: &mut builder, depth: 0 }.deserialize(deserializer)?;
        match builder.rank {
            Some(_) => Ok(NestedArray {
                values: builder.values,
                shape: builder.shape.into_iter().map(|s| s.unwrap_or_default()).collect(),
            }),
            None => Err(de::Error::custom("expected an array of numbers, got a single number")),
        }
    }
}

#[derive(Default)]
struct Builder {
    values: Vec<f32>,
    /// Axis lengths, fixed by the first array completed at each depth (inner arrays
    /// complete before outer ones).
    shape: Vec<Option<usize>>,
    /// Depth of the numbers, fixed by the first number met.
    rank: Option<usize>,
    /// Index at every depth of the element being read, for messages.
    path: Vec<usize>,
}

impl Builder {
    fn position(&self) -> String {
        if self.path.is_empty() {
            "the array".to_string()
        } else {
            self.path.iter().map(|i| format!("[{i}]")).collect()
        }
    }
}

struct Level<'a> {
    builder: &'a mut Builder,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Level<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Level<'_> {
    fn number<E: de::Error>(self, v: f64) -> Result<(), E> {
        let b = self.builder;
        match b.rank {
            None => b.rank = Some(self.depth),
            Some(r) if r != self.depth => {
                return Err(E::custom(format!(
                    "{}: a number where an array was expected (arrays must be rectangular)",
                    b.position()
                )))
            }
            Some(_) => {}
        }
        if self.depth == 0 {
            return Err(E::custom("expected an array of numbers, got a single number"));
        }
        let x = v as f32;
        if !x.is_finite() {
            return Err(E::custom(format!("{}: {v:e} is not a finite 32-bit number", b.position())));
        }
        b.values.push(x);
        Ok(())
    }
}

impl<'de> Visitor<'de> for Level<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a number or an array of numbers")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.number(v)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.number(v as f64)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let b = self.builder;
        let depth = self.depth;
        if b.rank.is_some_and(|r| depth >= r) {
            return Err(de::Error::custom(format!(
                "{}: an array where a number was expected (arrays must be rectangular)",
                b.position()
            )));
        }
        b.path.push(0);
        let mut count = 0;
        while seq.next_element_seed(Level { builder: &mut *b, depth: depth + 1 })?.is_some() {
            count += 1;
            if let Some(i) = b.path.last_mut() {
                *i = count;
            }
        }
        b.path.pop();
        if count == 0 {
            return Err(de::Error::custom(format!("{}: empty array", b.position())));
        }
        if b.shape.len() <= depth {
            b.shape.resize(depth + 1, None);
        }
        let position = b.position();
        let Some(slot) = b.shape.get_mut(depth) else {
            return Err(de::Error::custom(format!("{position}: nested too deep")));
        };
        match *slot {
            None => *slot = Some(count),
            Some(expected) if expected != count => {
                return Err(de::Error::custom(format!(
                "{position}: {count} elements where the first array at this depth has {expected} (arrays must be rectangular)"
            )))
            }
            Some(_) => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<NestedArray, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn nested_arrays_flatten_row_major_with_their_shape() {
        let a = parse("[[1, 2.5, -3], [4, 5, 6e0]]").unwrap();
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.values, vec![1.0, 2.5, -3.0, 4.0, 5.0, 6.0]);
        let a = parse("[[[1],[2]],[[3],[4]]]").unwrap();
        assert_eq!(a.shape, vec![2, 2, 1]);
        assert_eq!(parse("[7]").unwrap().shape, vec![1]);
    }

    #[test]
    fn ragged_empty_mixed_and_huge_arrays_are_refused_with_their_position() {
        let e = parse("[[1, 2], [3]]").unwrap_err();
        assert!(e.contains("[1]: 1 elements where the first array at this depth has 2"), "{e}");
        let e = parse("[[1, 2], 3]").unwrap_err();
        assert!(e.contains("[1]: a number where an array was expected"), "{e}");
        let e = parse("[1, [2]]").unwrap_err();
        assert!(e.contains("[1]: an array where a number was expected"), "{e}");
        assert!(parse("[]").unwrap_err().contains("empty array"));
        assert!(parse("[[1], []]").unwrap_err().contains("empty array"));
        let e = parse("[1, 1e300]").unwrap_err();
        assert!(e.contains("[1]: 1e300 is not a finite 32-bit number"), "{e}");
        assert!(parse("3").unwrap_err().contains("single number"));
        assert!(parse("[1, null]").is_err());
        assert!(parse("[1, NaN]").is_err());
    }
}
