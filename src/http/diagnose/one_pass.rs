//! The usual JSON diagnosis body read in one pass: the windows' numbers straight into one
//! `f32` buffer (`number`), every other field by serde_json.
//!
//! Anything unusual (an escaped key, a repeated window field, a ragged, empty or non-finite
//! array, a number in another form, text after the body) gives `None`, and the caller reads
//! the body with serde_json as before, whose answer and error message stand. What this
//! accepts it reads as serde_json would: the same fields (an unknown one is refused by
//! serde_json on the rest), the same shape rules as `NestedArray`, the same numbers.

use super::{number, DiagnoseRequest, NestedArray};
use serde_json::value::RawValue;

/// Deeper arrays than any model takes go to serde_json, which names the problem.
const MAX_DEPTH: usize = 8;

/// The request in `body`, or `None` for serde_json to read it.
pub(super) fn read(body: &[u8]) -> Option<DiagnoseRequest> {
    let mut text = Text { s: body, i: 0 };
    text.expect(b'{')?;
    // The other fields, re-assembled as a small object for serde_json.
    let mut rest = Vec::with_capacity(256);
    rest.push(b'{');
    let (mut signals, mut signal) = (None, None);
    text.space();
    if !text.eat(b'}') {
        loop {
            let key = text.key()?;
            match key {
                b"signals" if signals.is_none() => signals = Some(array(&mut text)?),
                b"signal" if signal.is_none() => signal = Some(array(&mut text)?),
                b"signals" | b"signal" => return None,
                _ => {
                    let value = text.value()?;
                    if rest.len() > 1 {
                        rest.push(b',');
                    }
                    rest.push(b'"');
                    rest.extend_from_slice(key);
                    rest.extend_from_slice(b"\":");
                    rest.extend_from_slice(value);
                }
            }
            if !text.more(b'}')? {
                break;
            }
        }
    }
    text.space();
    if text.i != body.len() {
        return None;
    }
    rest.push(b'}');
    let mut request: DiagnoseRequest = serde_json::from_slice(&rest).ok()?;
    request.signals = signals;
    request.signal = signal;
    Some(request)
}

struct Text<'a> {
    s: &'a [u8],
    i: usize,
}

impl<'a> Text<'a> {
    fn space(&mut self) {
        self.i += self.s.get(self.i..).map_or(0, spaces);
    }

    fn eat(&mut self, c: u8) -> bool {
        let found = self.s.get(self.i) == Some(&c);
        if found {
            self.i += 1;
        }
        found
    }

    /// `c` after any white space.
    fn expect(&mut self, c: u8) -> Option<()> {
        self.space();
        self.eat(c).then_some(())
    }

    /// After an element: `true` past a comma (another follows), `false` past `close`.
    fn more(&mut self, close: u8) -> Option<bool> {
        self.space();
        if self.eat(b',') {
            return Some(true);
        }
        self.eat(close).then_some(false)
    }

    /// A key without escapes and the colon after it.
    fn key(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        let length = self.s.get(start..)?.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
        self.i = start + length;
        self.eat(b'"').then_some(())?;
        self.expect(b':')?;
        self.s.get(start..start + length)
    }

    /// Any JSON value, as text, checked by serde_json.
    fn value(&mut self) -> Option<&'a [u8]> {
        self.space();
        let start = self.i;
        let mut values = serde_json::Deserializer::from_slice(self.s.get(start..)?).into_iter::<&RawValue>();
        values.next()?.ok()?;
        self.i = start + values.byte_offset();
        self.s.get(start..self.i)
    }
}

/// A nested array of numbers, by `NestedArray`'s rules; `None` on anything it would refuse.
fn array(text: &mut Text) -> Option<NestedArray> {
    // Room for a number every 16 bytes of the body: float64 text (about 20 bytes a number)
    // never grows, float32 text (about 11) grows once, instead of a dozen doublings.
    let room = text.s.len().saturating_sub(text.i) / 16;
    let mut nest = Nest { values: Vec::with_capacity(room), shape: Vec::new(), rank: None };
    nest.level(text, 0)?;
    if nest.values.capacity() > 2 * nest.values.len() {
        // Short numbers in a long body: give the room back for the request's lifetime.
        nest.values.shrink_to_fit();
    }
    let shape = nest.shape.into_iter().collect::<Option<Vec<usize>>>()?;
    Some(NestedArray { values: nest.values, shape })
}

struct Nest {
    values: Vec<f32>,
    /// Axis lengths, fixed by the first array completed at each depth.
    shape: Vec<Option<usize>>,
    /// Depth of the numbers, fixed by the first one.
    rank: Option<usize>,
}

impl Nest {
    /// The array at `text`, `depth` arrays deep.
    fn level(&mut self, text: &mut Text, depth: usize) -> Option<()> {
        text.expect(b'[')?;
        if depth >= MAX_DEPTH {
            return None;
        }
        let inner = depth + 1;
        text.space();
        // An array holds numbers or arrays, told by its first element (`[]` counts as
        // numbers, then fails to read one: serde_json names the empty array).
        let numbers = text.s.get(text.i) != Some(&b'[');
        if numbers {
            if *self.rank.get_or_insert(inner) != inner {
                return None;
            }
        } else if self.rank.is_some_and(|r| inner >= r) {
            return None;
        }
        let count = if numbers { self.numbers(text)? } else { self.arrays(text, inner)? };
        if self.shape.len() <= depth {
            self.shape.resize(depth + 1, None);
        }
        let expected = self.shape.get_mut(depth)?.get_or_insert(count);
        (*expected == count).then_some(())
    }

    /// The elements of an array of arrays, `inner` deep; how many.
    fn arrays(&mut self, text: &mut Text, inner: usize) -> Option<usize> {
        let mut count = 0;
        loop {
            self.level(text, inner)?;
            count += 1;
            if !text.more(b']')? {
                return Some(count);
            }
        }
    }

    /// The elements of an array of numbers (the hot loop: one window's samples); how many.
    fn numbers(&mut self, text: &mut Text) -> Option<usize> {
        // The position in a local, not behind `text`, keeps it in a register.
        let (s, mut i) = (text.s, text.i);
        let start = self.values.len();
        loop {
            let (x, end) = number::read(s, i)?;
            self.values.push(x);
            i = end;
            match s.get(i) {
                Some(b',') => i += 1,
                Some(b']') => break,
                _ => {
                    i += s.get(i..).map_or(0, spaces);
                    match s.get(i) {
                        Some(b',') => i += 1,
                        Some(b']') => break,
                        _ => return None,
                    }
                }
            }
            i += spaces(s.get(i..)?);
        }
        text.i = i + 1;
        Some(self.values.len() - start)
    }
}

/// How many white-space bytes `s` starts with.
fn spaces(s: &[u8]) -> usize {
    s.iter().take_while(|c| matches!(c, b' ' | b'\n' | b'\t' | b'\r')).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// serde_json's reading of `body`, as the service answered before this reader.
    fn by_serde(body: &str) -> Result<String, String> {
        serde_json::from_str::<DiagnoseRequest>(body).map(|r| format!("{r:?}")).map_err(|e| e.to_string())
    }

    #[test]
    fn usual_bodies_read_as_serde_json_reads_them() {
        for body in [
            r#"{"model": "cwru-bearing", "signals": [[1, 2.5, -3e-2], [4, 5, 6]]}"#,
            r#"{"signal":[0.1,-0.2,0.30000000000000004],"model":"m","diagnostics":"none"}"#,
            "{\n  \"model\" : \"m\" ,\n  \"signals\" : [ [ [ 1 ] , [ 2 ] ] ]\n, \"version\": 3, \"rpm\": 1797.5 }\n",
            r#"{"model": "m", "signals": [[1]], "bearing": "6205-2RS \"JEM\" \u00e9", "evidence": true}"#,
            r#"{"model": "m", "signals": [[1]], "signal": [2], "sample_rate": 48000, "spectrum": false}"#,
            r#"{"model": "mé", "signals": [[-0, 0.0, 1E+2, 12345678901234567890123]]}"#,
            r#"{"model": "m"}"#,
        ] {
            let ours = read(body.as_bytes()).unwrap_or_else(|| panic!("not read in one pass: {body}"));
            assert_eq!(Ok(format!("{ours:?}")), by_serde(body), "{body}");
        }
    }

    #[test]
    fn anything_unusual_is_left_to_serde_json() {
        for body in [
            r#"{"model": "m", "signals": [[1, 2], [3]]}"#,
            r#"{"model": "m", "signals": [[1, 2], 3]}"#,
            r#"{"model": "m", "signals": [1, [2]]}"#,
            r#"{"model": "m", "signals": []}"#,
            r#"{"model": "m", "signals": [[1], []]}"#,
            r#"{"model": "m", "signals": [1e300]}"#,
            r#"{"model": "m", "signals": [01]}"#,
            r#"{"model": "m", "signals": [1.]}"#,
            r#"{"model": "m", "signals": [NaN]}"#,
            r#"{"model": "m", "signals": null}"#,
            r#"{"model": "m", "signals": 3}"#,
            r#"{"model": "m", "signals": [[1]], "signals": [[2]]}"#,
            r#"{"model": "m", "model": "n", "signals": [[1]]}"#,
            r#"{"model": "m", "signals": [[1]], "colour": "red"}"#,
            r#"{"mo\u0064el": "m", "signals": [[1]]}"#,
            r#"{"model": "m", "signals": [[1]]} x"#,
            r#"{"model": "m", "signals": [[1]],}"#,
            r#"{"model": "m" "signals": [[1]]}"#,
            r#"{"model": 3, "signals": [[1]]}"#,
            r#"{"model": "m", "signals": [[1]"#,
            r#"{"model": "m", "signals": [[[[[[[[[[1]]]]]]]]]]}"#,
            r#"[{"model": "m"}]"#,
            "",
        ] {
            assert!(read(body.as_bytes()).is_none(), "read in one pass: {body}");
        }
        // Invalid UTF-8 in another field: serde_json refuses the rest.
        assert!(read(b"{\"model\": \"\xff\", \"signals\": [[1]]}").is_none());
    }

    #[test]
    fn whatever_it_reads_from_mangled_bodies_serde_json_reads_the_same() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let valid = r#"{"model": "m", "signals": [[1.5, -0.25, 3e2], [0.125, 7, -8.0E-1]], "rpm": 1797, "diagnostics": "none"}"#;
        let alphabet = b"[]{},:\" 0123456789.-+eE\\nx";
        let (mut read_here, mut left) = (0, 0);
        for _ in 0..20_000 {
            let mut body = valid.as_bytes().to_vec();
            for _ in 0..rng.random_range(1..4) {
                let at = rng.random_range(0..body.len());
                let c = alphabet[rng.random_range(0..alphabet.len())];
                match rng.random_range(0..3) {
                    0 => body[at] = c,
                    1 => body.insert(at, c),
                    _ => drop(body.remove(at)),
                }
            }
            match read(&body) {
                Some(ours) => {
                    read_here += 1;
                    let theirs = serde_json::from_slice::<DiagnoseRequest>(&body).map(|r| format!("{r:?}"));
                    assert_eq!(
                        Ok(format!("{ours:?}")),
                        theirs.map_err(|e| e.to_string()),
                        "{}",
                        String::from_utf8_lossy(&body)
                    );
                }
                None => left += 1,
            }
        }
        // Both paths were exercised.
        assert!(read_here > 1000 && left > 1000, "{read_here} read here, {left} left to serde_json");
    }
}
