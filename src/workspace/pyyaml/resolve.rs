//! PyYAML's implicit resolvers (`resolver.py`): which plain scalars YAML 1.1 reads as
//! something other than a string. The writer quotes exactly these; the reader types them.

use std::sync::LazyLock;

use regex::Regex;

/// The type a plain scalar resolves to, when it is not a string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Implicit {
    Bool,
    Float,
    Int,
    Merge,
    Null,
    Timestamp,
    /// `=`: PyYAML's `tag:yaml.org,2002:value`, which `safe_load` cannot construct.
    Value,
}

/// Each resolver's pattern, in PyYAML's order, with the first characters PyYAML
/// files it under (it tries only those resolvers; empty means the empty string).
/// Python's `re.match(...$)` also matches before one trailing newline; the writer
/// needs that, and a plain scalar the reader sees never ends in one.
static RESOLVERS: LazyLock<[(Implicit, &str, Regex); 7]> = LazyLock::new(|| {
    let re = |body: &str| Regex::new(&format!(r"^(?:{body})\n?$")).expect("static regex");
    [
        (
            Implicit::Bool,
            "yYnNtTfFoO",
            re("yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF"),
        ),
        (
            Implicit::Float,
            "-+0123456789.",
            re(concat!(
                r"[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?",
                r"|\.[0-9][0-9_]*(?:[eE][-+][0-9]+)?",
                r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*",
                r"|[-+]?\.(?:inf|Inf|INF)",
                r"|\.(?:nan|NaN|NAN)",
            )),
        ),
        (
            Implicit::Int,
            "-+0123456789",
            re(concat!(
                r"[-+]?0b[0-1_]+",
                r"|[-+]?0[0-7_]+",
                r"|[-+]?(?:0|[1-9][0-9_]*)",
                r"|[-+]?0x[0-9a-fA-F_]+",
                r"|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+",
            )),
        ),
        (Implicit::Merge, "<", re("<<")),
        (Implicit::Null, "~nN", re("~|null|Null|NULL|")),
        (
            Implicit::Timestamp,
            "0123456789",
            re(concat!(
                r"[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]",
                r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?",
                r"(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?",
                r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?",
            )),
        ),
        (Implicit::Value, "=", re("=")),
    ]
});

/// What PyYAML's `SafeLoader` resolves the plain scalar `value` to; `None` is a string.
pub fn resolve(value: &str) -> Option<Implicit> {
    let first = value.chars().next();
    RESOLVERS
        .iter()
        .filter(|(tag, starts, _)| match first {
            Some(c) => starts.contains(c),
            None => *tag == Implicit::Null,
        })
        .find(|(_, _, re)| re.is_match(value))
        .map(|(tag, _, _)| *tag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_1_1_forms() {
        for (s, want) in [
            ("yes", Some(Implicit::Bool)),
            ("OFF", Some(Implicit::Bool)),
            ("oFF", None),
            ("y", None),
            ("1e3", None),
            ("1.5e3", None),
            ("1.5e+3", Some(Implicit::Float)),
            ("1.", Some(Implicit::Float)),
            ("-.5", None),
            (".5", Some(Implicit::Float)),
            ("-.inf", Some(Implicit::Float)),
            ("-.nan", None),
            ("1:20.5", Some(Implicit::Float)),
            ("0o17", None),
            ("017", Some(Implicit::Int)),
            ("08", None),
            ("0x1F", Some(Implicit::Int)),
            ("0b101", Some(Implicit::Int)),
            ("1_000", Some(Implicit::Int)),
            ("1:20", Some(Implicit::Int)),
            ("", Some(Implicit::Null)),
            ("~", Some(Implicit::Null)),
            ("nULL", None),
            ("2026-06-21", Some(Implicit::Timestamp)),
            ("2026-6-21", None),
            ("2026-6-1 1:02:03", Some(Implicit::Timestamp)),
            ("<<", Some(Implicit::Merge)),
            ("=", Some(Implicit::Value)),
            ("true\n", Some(Implicit::Bool)),
            ("true\n\n", None),
        ] {
            assert_eq!(resolve(s), want, "{s:?}");
        }
    }
}
