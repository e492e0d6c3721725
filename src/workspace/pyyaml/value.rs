//! The Python objects `safe_load` returns, and Python's `str()` of them: upstream
//! turns front-matter values into text with `str(value)`, so floom does the same.

/// What `yaml.safe_load` gives for a node.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Null,
    Bool(bool),
    /// An integer of any size, as Python's `str()` writes it.
    Int(String),
    Float(f64),
    Timestamp(Timestamp),
    Str(String),
    Bytes(Vec<u8>),
    Seq(Vec<Object>),
    Map(Vec<(Object, Object)>),
}

impl Object {
    /// Python's `str()` of a scalar; `None` for a container or bytes.
    pub fn py_str(&self) -> Option<String> {
        Some(match self {
            Object::Null => "None".into(),
            Object::Bool(true) => "True".into(),
            Object::Bool(false) => "False".into(),
            Object::Int(s) | Object::Str(s) => s.clone(),
            Object::Float(f) => py_float_repr(*f),
            Object::Timestamp(t) => t.py_str(' '),
            Object::Bytes(_) | Object::Seq(_) | Object::Map(_) => return None,
        })
    }

    /// Python's truth value (`value or default`).
    pub fn truthy(&self) -> bool {
        match self {
            Object::Null => false,
            Object::Bool(b) => *b,
            Object::Int(s) => s != "0",
            Object::Float(f) => *f != 0.0,
            Object::Timestamp(_) => true,
            Object::Str(s) => !s.is_empty(),
            Object::Bytes(b) => !b.is_empty(),
            Object::Seq(v) => !v.is_empty(),
            Object::Map(v) => !v.is_empty(),
        }
    }

    /// A key under which equal Python dict keys collide (`1`, `1.0` and `True` are one
    /// key in Python).
    pub(super) fn hash_key(&self) -> String {
        match self {
            Object::Bool(b) => format!("n:{}", u8::from(*b)),
            Object::Int(s) => format!("n:{s}"),
            Object::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("n:{}", *f as i64),
            Object::Float(f) => format!("f:{}", py_float_repr(*f)),
            Object::Str(s) => format!("s:{s}"),
            other => format!("o:{other:?}"),
        }
    }
}

/// A YAML timestamp: a `datetime.date`, or a `datetime.datetime` with an optional
/// fixed offset in minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timestamp {
    year: u32,
    month: u32,
    day: u32,
    time: Option<Time>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Time {
    hour: u32,
    minute: u32,
    second: u32,
    micro: u32,
    offset_minutes: Option<i32>,
}

impl Timestamp {
    /// `datetime.date(year, month, day)`, `None` where Python raises.
    pub fn date(year: u32, month: u32, day: u32) -> Option<Self> {
        let leap =
            year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400));
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        ((1..=9999).contains(&year) && (1..=days).contains(&day)).then_some(Timestamp {
            year,
            month,
            day,
            time: None,
        })
    }

    /// `datetime.datetime(...)` with `timezone(timedelta(minutes=offset))`.
    pub fn with_time(
        self,
        hour: u32,
        minute: u32,
        second: u32,
        micro: u32,
        offset_minutes: Option<i32>,
    ) -> Option<Self> {
        let valid = hour < 24
            && minute < 60
            && second < 60
            && offset_minutes.is_none_or(|m| m.abs() < 24 * 60);
        valid.then_some(Timestamp {
            time: Some(Time {
                hour,
                minute,
                second,
                micro,
                offset_minutes,
            }),
            ..self
        })
    }

    /// `str()` (separator `' '`) or `isoformat()` (separator `'T'`).
    pub fn py_str(&self, sep: char) -> String {
        let mut s = format!("{:04}-{:02}-{:02}", self.year, self.month, self.day);
        if let Some(t) = &self.time {
            s.push_str(&format!(
                "{sep}{:02}:{:02}:{:02}",
                t.hour, t.minute, t.second
            ));
            if t.micro != 0 {
                s.push_str(&format!(".{:06}", t.micro));
            }
            if let Some(m) = t.offset_minutes {
                let sign = if m < 0 { '-' } else { '+' };
                s.push_str(&format!("{sign}{:02}:{:02}", m.abs() / 60, m.abs() % 60));
            }
        }
        s
    }
}

/// Python's `repr(float)` (which `str()` also uses): the shortest digits that read back
/// the same, positional for exponents -4 to 15, else scientific (`1e+16`, `1.5e-05`).
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf" } else { "-inf" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("`{:e}` has an exponent");
    let exp: i32 = exp.parse().expect("`{:e}` exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    let point = exp + 1; // digits before the decimal point
    let n = digits.len() as i32;
    if -4 < point && point <= 16 {
        if point <= 0 {
            format!("{sign}0.{}{digits}", "0".repeat((-point) as usize))
        } else if point >= n {
            format!("{sign}{digits}{}.0", "0".repeat((point - n) as usize))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{sign}{int}.{frac}")
        }
    } else {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{first}{frac}e{esign}{:02}", exp.abs())
    }
}

/// A non-negative integer of any size, in base 10^9 limbs (least significant first).
pub struct BigUint(Vec<u32>);

const LIMB: u64 = 1_000_000_000;

impl BigUint {
    /// Python's `int(digits, radix)` for a non-empty run of digits (no sign, no `_`).
    pub fn parse(digits: &str, radix: u32) -> Option<Self> {
        if digits.is_empty() {
            return None;
        }
        let mut n = BigUint(vec![0]);
        for c in digits.chars() {
            n.mul_add(radix, c.to_digit(radix)?);
        }
        Some(n)
    }

    pub fn mul_add(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = (v % LIMB) as u32;
            carry = v / LIMB;
        }
        while carry > 0 {
            self.0.push((carry % LIMB) as u32);
            carry /= LIMB;
        }
    }

    pub fn to_decimal(&self) -> String {
        let mut limbs = self.0.iter().rev().skip_while(|l| **l == 0);
        let Some(first) = limbs.next() else {
            return "0".into();
        };
        let mut s = first.to_string();
        for limb in limbs {
            s.push_str(&format!("{limb:09}"));
        }
        s
    }
}

/// `str(int(digits, radix))`.
pub fn py_int(digits: &str, radix: u32) -> Option<String> {
    Some(BigUint::parse(digits, radix)?.to_decimal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        for (f, want) in [
            (1000.0, "1000.0"),
            (1.5, "1.5"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1e15, "1000000000000000.0"),
            (123456789012345680.0, "1.2345678901234568e+17"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-1.5e-7, "-1.5e-07"),
            (1e100, "1e+100"),
            (-0.0, "-0.0"),
            (f64::INFINITY, "inf"),
        ] {
            assert_eq!(py_float_repr(f), want);
        }
    }

    #[test]
    fn timestamps_print_as_python() {
        let t = Timestamp::date(2001, 12, 14)
            .unwrap()
            .with_time(21, 59, 43, 100_000, Some(-300))
            .unwrap();
        assert_eq!(t.py_str(' '), "2001-12-14 21:59:43.100000-05:00");
        assert_eq!(t.py_str('T'), "2001-12-14T21:59:43.100000-05:00");
        assert!(Timestamp::date(2023, 2, 29).is_none());
        assert!(Timestamp::date(2024, 2, 29).is_some());
    }

    #[test]
    fn big_ints() {
        assert_eq!(py_int("777", 8).unwrap(), "511");
        assert_eq!(py_int("0", 10).unwrap(), "0");
        assert_eq!(
            py_int("ffffffffffffffffffffffff", 16).unwrap(),
            "79228162514264337593543950335"
        );
        assert!(py_int("", 2).is_none());
    }
}
