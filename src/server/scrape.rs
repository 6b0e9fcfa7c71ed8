//! `GET /metrics` (contract §8): the counters plus what is read now.

use super::Server;
use crate::http::response::Reply;
use crate::metrics::{Gauges, Sent, CONTENT_TYPE};

impl Server {
    /// The scrape reply: counters, then gauges read from the tables now.
    pub(super) fn scrape(&self, headers: Vec<(&'static str, String)>) -> Reply {
        let mut open_sent = Sent::default();
        let mut streams_open = 0;
        for conn in self.conns.iter() {
            open_sent.add(conn.counts());
            if conn.is_streaming() {
                streams_open += 1;
            }
        }
        let live = || self.records.iter().filter(|r| !r.forgotten);
        let gauges = Gauges {
            connections_open: self.conns.len() as u64,
            streams_open,
            commands_running: self.children.len() as u64,
            jobs_running: live().filter(|r| r.job().is_some()).count() as u64,
            jobs_kept: live().filter(|r| r.is_finished()).count() as u64,
            open_sent,
        };
        let mut reply = Reply::text(200, "OK", "");
        reply.body = self.metrics.render(&gauges).into_bytes();
        reply.content_type = Some(CONTENT_TYPE);
        reply.headers.extend(headers);
        reply.header("Cache-Control", "no-store")
    }
}
