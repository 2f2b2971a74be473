//! JSON opened only as deep as its reader needs, and written back by copying.
//!
//! A reader that looks at a handful of fields of a large object (the event pipeline reads and
//! changes `type`, the ids, the times and a few keys of `context`) must still write back
//! everything else exactly as it came. Parsing it all into a `serde_json::Value` tree and
//! serializing it again would cost most of the time, so an [`Obj`] keeps its fields as unparsed
//! slices of the input ([`Node::Raw`]) until one is read, and writes them back by copying the
//! bytes. Only the nested objects a [`Shape`] names are opened, in the same pass; others open on
//! demand, one level at a time.
//!
//! Fields keep their order; new fields go after them. A duplicated key keeps its last value, as
//! `serde_json` does. The text is checked by [`scan`], which reads the JSON grammar without
//! building values; a value's slice is kept only once it has been checked, so whatever is copied
//! out is valid JSON.
//!
//! Nothing here knows what the objects mean: which fields to open is the reader's business.

mod cursor;
mod object;
mod scan;
#[cfg(test)]
mod tests;
mod text;

pub(crate) use cursor::Cursor;
pub(crate) use object::{Node, Obj, Shape};
pub(crate) use scan::{MAX_NESTING, Problem, problem};
pub(crate) use text::{Kind, write_str};
