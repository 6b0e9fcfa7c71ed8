//! The HTTP/SSE client `ssecommander bench` is built on (and the tests and
//! benches read streams through): pure pieces, bytes in and values out, no
//! sockets and no clock, so each is unit-tested split at every byte.
//!
//! - [`url`]: `http://host:port/path?query` and the `/run?command=` target
//!   built from it (the URL's query, a `token=` included, rides along).
//! - [`http`]: request writing; the response head (`httparse`); an
//!   incremental, strict body decoder (chunked, `Content-Length`, close).
//! - [`sse`]: a strict incremental WHATWG event-stream parser.
//! - [`payload`]: what an event means — its kind and the child output it
//!   carries (JSON `out` decoded, or raw text).
//!
//! A stream is read by feeding socket bytes to a
//! [`http::ResponseReader`], whose body bytes go to an [`sse::SseParser`],
//! whose events go to [`payload::output`].

pub mod http;
pub mod payload;
pub mod sse;
pub mod url;

pub use http::{BodyDecoder, Framing, Head, HttpError, ResponseReader};
pub use payload::{Encoding, Kind};
pub use sse::{End, Event, Item, SseError, SseParser};
pub use url::{Url, UrlError};
