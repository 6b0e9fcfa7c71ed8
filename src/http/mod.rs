//! HTTP/1.1 on raw TCP: request heads in, response bytes out; [`conn`] is
//! the state machine of one client socket (the only part that does I/O).

pub mod body;
pub mod conn;
pub mod query;
pub mod request;
pub mod response;
