//! libyaml's event parser behind a safe interface. libyaml was written as the C twin
//! of PyYAML's own scanner and parser, so it splits a document exactly as PyYAML does;
//! `libyaml-rs` is its transpilation to Rust (already under `yaml_serde`). Unlike
//! `yaml_serde`, the events keep what a YAML 1.1 reader needs: the scalar's style
//! (plain or quoted), its raw tag, and byte positions.
//!
//! All `unsafe` of the reader is in this file.

use std::ffi::CStr;
use std::marker::PhantomData;
use std::mem::MaybeUninit;

use libyaml_rs as sys;

/// A byte position in the input, with its 0-based line and column.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Mark {
    pub index: usize,
    pub line: usize,
    pub column: usize,
}

#[derive(Debug)]
pub enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias {
        anchor: String,
    },
    Scalar {
        anchor: Option<String>,
        tag: Option<String>,
        value: String,
        /// Written plain (not quoted, not a block scalar).
        plain: bool,
        /// PyYAML's `implicit[0]`: untagged (or tagged `!`) and plain, so the implicit
        /// resolvers apply.
        plain_implicit: bool,
    },
    SequenceStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    SequenceEnd,
    MappingStart {
        anchor: Option<String>,
        tag: Option<String>,
    },
    MappingEnd,
}

/// The parse error as libyaml words it, e.g. "mapping values are not allowed in this
/// context at line 2 column 8".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SyntaxError(pub String);

pub struct Parser<'input> {
    /// Boxed: for string input libyaml keeps a pointer to the parser itself, so it must
    /// not move once initialised.
    sys: Box<MaybeUninit<sys::yaml_parser_t>>,
    input: PhantomData<&'input str>,
}

impl<'input> Parser<'input> {
    pub fn new(input: &'input str) -> Self {
        let mut sys = Box::new(MaybeUninit::<sys::yaml_parser_t>::uninit());
        let parser = sys.as_mut_ptr();
        // SAFETY: `parser` points to boxed (stable) memory that `yaml_parser_initialize`
        // fully initialises; the input outlives the parser (the `'input` borrow).
        unsafe {
            assert!(
                sys::yaml_parser_initialize(parser).ok,
                "libyaml could not allocate a parser"
            );
            sys::yaml_parser_set_encoding(parser, sys::YAML_UTF8_ENCODING);
            sys::yaml_parser_set_input_string(parser, input.as_ptr(), input.len() as u64);
        }
        Parser {
            sys,
            input: PhantomData,
        }
    }

    /// The next event with its start and end positions.
    pub fn next_event(&mut self) -> Result<(Event, Mark, Mark), SyntaxError> {
        let parser = self.sys.as_mut_ptr();
        let mut event = MaybeUninit::<sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialised in `new`; after a failed parse libyaml
        // leaves the event empty and the error fields set, which we read and stop.
        // A successful parse fills `event`, which we copy out of and then delete once.
        unsafe {
            let failed_before = (&*parser).error != sys::YAML_NO_ERROR;
            if failed_before || sys::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                return Err(syntax_error(&*parser));
            }
            let event = event.as_mut_ptr();
            let owned = convert(&*event);
            let (start, end) = (mark((*event).start_mark), mark((*event).end_mark));
            sys::yaml_event_delete(event);
            Ok((owned, start, end))
        }
    }
}

impl Drop for Parser<'_> {
    fn drop(&mut self) {
        // SAFETY: initialised in `new`, deleted once here.
        unsafe { sys::yaml_parser_delete(self.sys.as_mut_ptr()) }
    }
}

fn mark(m: sys::yaml_mark_t) -> Mark {
    Mark {
        index: m.index as usize,
        line: m.line as usize,
        column: m.column as usize,
    }
}

/// # Safety
/// `p` is null or a NUL-terminated string that libyaml allocated.
unsafe fn opt_string(p: *const u8) -> Option<String> {
    if p.is_null() {
        return None;
    }
    // SAFETY: per the contract above.
    let c = unsafe { CStr::from_ptr(p.cast()) };
    Some(String::from_utf8_lossy(c.to_bytes()).into_owned())
}

/// # Safety
/// `e` is an event that `yaml_parser_parse` filled and that is not yet deleted.
unsafe fn convert(e: &sys::yaml_event_t) -> Event {
    // SAFETY: each union field is read only for the event type that libyaml filled.
    unsafe {
        match e.type_ {
            sys::YAML_STREAM_START_EVENT => Event::StreamStart,
            sys::YAML_STREAM_END_EVENT => Event::StreamEnd,
            sys::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
            sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
            sys::YAML_ALIAS_EVENT => Event::Alias {
                anchor: opt_string(e.data.alias.anchor).unwrap_or_default(),
            },
            sys::YAML_SCALAR_EVENT => {
                let s = e.data.scalar;
                let bytes = std::slice::from_raw_parts(s.value, s.length as usize);
                Event::Scalar {
                    anchor: opt_string(s.anchor),
                    tag: opt_string(s.tag),
                    // The input is UTF-8 and libyaml writes UTF-8.
                    value: String::from_utf8_lossy(bytes).into_owned(),
                    plain: s.style == sys::YAML_PLAIN_SCALAR_STYLE,
                    plain_implicit: s.plain_implicit,
                }
            }
            sys::YAML_SEQUENCE_START_EVENT => Event::SequenceStart {
                anchor: opt_string(e.data.sequence_start.anchor),
                tag: opt_string(e.data.sequence_start.tag),
            },
            sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
            sys::YAML_MAPPING_START_EVENT => Event::MappingStart {
                anchor: opt_string(e.data.mapping_start.anchor),
                tag: opt_string(e.data.mapping_start.tag),
            },
            sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
            // YAML_NO_EVENT: only after the stream ended.
            _ => Event::StreamEnd,
        }
    }
}

/// # Safety
/// `p` is an initialised parser whose last call failed.
unsafe fn syntax_error(p: &sys::yaml_parser_t) -> SyntaxError {
    // SAFETY: libyaml sets `problem` and `context` to static strings or null.
    let (problem, context) =
        unsafe { (opt_string(p.problem.cast()), opt_string(p.context.cast())) };
    let problem = problem.unwrap_or_else(|| "unknown YAML error".into());
    let at = |m: sys::yaml_mark_t| format!("line {} column {}", m.line + 1, m.column + 1);
    SyntaxError(match context {
        Some(context) => format!(
            "{context} at {}: {problem} at {}",
            at(p.context_mark),
            at(p.problem_mark)
        ),
        None => format!("{problem} at {}", at(p.problem_mark)),
    })
}
