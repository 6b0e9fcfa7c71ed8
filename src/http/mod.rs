//! HTTP/1.1 on raw TCP: request heads in, response bytes out. No I/O here.

pub mod body;
pub mod query;
pub mod request;
pub mod response;
