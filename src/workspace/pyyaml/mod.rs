//! YAML as upstream's PyYAML reads and writes it: front matter is written as
//! `safe_dump` writes it ([`dump`]) and read as `safe_load` reads it ([`load`]), with
//! one set of YAML 1.1 implicit resolvers between them ([`resolve`]), so what floom
//! writes, PyYAML and floom both read back unchanged.

mod dump;
mod events;
mod load;
mod resolve;
mod value;

pub use dump::{Value, write_entry};
pub use load::{LoadError, Top, TopMapping, WrittenEntry, load_top, safe_load};
pub use value::{Object, Timestamp};
