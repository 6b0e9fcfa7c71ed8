//! One stream for many jobs (contract §11): `GET /jobs/events[?ids=…]`.
//!
//! A multiplexed viewer is a viewer of each job it includes: it is in each
//! record's list of viewers, so the log keeps what it still needs, the
//! slowest viewer paces the command, and a job's growth wakes it. Its
//! connection merges the jobs' logs by global number ([`crate::mux::Mux`]);
//! the server tells it which job grew ([`Server::note_growth`]), adds jobs
//! started while an all-jobs stream is open ([`Server::mux_job_started`]),
//! and detaches it from each job whose last event it sent.

use std::time::Instant;

use super::{Server, State as ServerState};
use crate::eventlog;
use crate::http::conn::Source;
use crate::http::request::Head;
use crate::http::response::Reply;
use crate::jobs::Viewer;
use crate::mux::Mux;

impl Server {
    /// `GET /jobs/events`: the stream head and `retry:`, then the viewer
    /// pulls. `ids`: those jobs (`404` if one is unknown or forgotten),
    /// else every job. `after`: resume after this global number (`400`
    /// past the last one given; `204` with `ids` when every job ended at or
    /// before it).
    pub(super) fn begin_watch_many(
        &mut self,
        index: usize,
        head: &Head,
        ids: Option<Vec<String>>,
        after: Option<u64>,
        headers: &[(&'static str, String)],
        now: Instant,
    ) -> Result<(), Reply> {
        let last = eventlog::last_global();
        if let Some(g) = after.filter(|&g| g > last) {
            return Err(Reply::text(
                400,
                "Bad Request",
                &format!(
                    "bad request: Last-Event-ID {g} is past the last event of this server ({last}); it restarted?"
                ),
            ));
        }
        let every = ids.is_none();
        let records = match ids {
            Some(ids) => {
                let mut found = Vec::with_capacity(ids.len());
                for id in &ids {
                    found.push(self.find_record(id).ok_or_else(super::publish::no_job)?);
                }
                found
            }
            None => self
                .records
                .indices()
                .into_iter()
                .filter(|&i| self.records.get(i).is_some_and(|r| !r.forgotten))
                .collect(),
        };
        let mut mux = Mux::new(every);
        let mut included = Vec::with_capacity(records.len());
        for record in records {
            let Some(r) = self.records.get(record) else { continue };
            if let Some(slot) = mux.add(record, &r.log, after.unwrap_or(0)) {
                included.push((record, slot));
            }
        }
        if !every && included.is_empty() {
            return Err(Reply::empty(204, "No Content"));
        }
        let Some(conn) = self.conns.get_mut(index) else {
            return Ok(());
        };
        self.metrics.response(200);
        let reuse = self.state == ServerState::Serving;
        if !reuse {
            mux.close();
        }
        conn.begin_mux(head, reuse, headers, mux, self.config.heartbeat, now, &mut self.timers);
        for (record, slot) in included {
            if let Some(r) = self.records.get_mut(record) {
                r.viewers.push(Viewer { conn: index, slot });
            }
        }
        // The connection pulls as soon as its socket has room.
        Ok(())
    }

    /// Sends a multiplexed viewer what it has not had, while its socket
    /// takes it. True if it may take more at once (or must be closed).
    pub(super) fn pull_mux(&mut self, index: usize, now: Instant) -> bool {
        let Some(conn) = self.conns.get_mut(index) else {
            return false;
        };
        let mut left = Vec::new();
        let pulled = conn.pull_mux(&self.records, now, &mut self.timers, &mut left);
        // The commands this viewer just caught up with may wait on it: only
        // those whose output waits unread (most pulls catch up with a job
        // that waits on nothing). Kept with its room.
        let mut caught_up = std::mem::take(&mut self.caught_up);
        if conn.pending_len() == 0 {
            if let Some(mux) = conn.mux_mut() {
                let (records, jobs) = (&self.records, &self.jobs);
                mux.take_caught_up(&mut caught_up, |record| {
                    let job = records.get(record).and_then(crate::jobs::Record::job);
                    job.and_then(|job| jobs.get(job))
                        .is_some_and(crate::job::Job::has_unread)
                });
            }
        }
        let broken = conn.is_broken();
        for record in left {
            self.leave_record(index, record, now);
        }
        if broken || pulled.ended {
            caught_up.clear();
            self.caught_up = caught_up;
            return true;
        }
        // Read again once no other viewer holds it back (see `pull`).
        for record_index in caught_up.drain(..) {
            let Some(record) = self.records.get(record_index) else {
                continue;
            };
            let Some(job) = record.job() else { continue };
            if super::publish::all_caught_up(record, record_index, &self.conns) && !self.revisit_jobs.contains(&job) {
                self.revisit_jobs.push(job);
            }
        }
        self.caught_up = caught_up;
        // Caught up: nothing more until a job's log grows (a look again
        // would find nothing, at a cost per wake).
        pulled.sent > 0 && !pulled.caught_up
    }

    /// A multiplexed viewer closes: it leaves every job it still watched.
    pub(super) fn unwatch_mux(&mut self, index: usize, now: Instant) {
        let records: Vec<usize> = match self.conns.get_mut(index).and_then(|c| c.mux_mut()) {
            Some(mux) => mux.records().collect(),
            None => return,
        };
        for record in records {
            self.leave_record(index, record, now);
        }
    }

    /// The log of the job at `record` grew from its event `first` on: its
    /// multiplexed viewers look at it again on their next pull (one note,
    /// not a look at every job).
    pub(super) fn note_growth(&mut self, record: usize, first: u64) {
        let Some(r) = self.records.get(record) else { return };
        for &viewer in &r.viewers {
            if let Some(mux) = self.conns.get_mut(viewer.conn).and_then(|c| c.mux_mut()) {
                mux.note_at(record, viewer.slot, &r.log, first);
            }
        }
    }

    /// A job was created: every all-jobs stream open includes it.
    pub(super) fn mux_job_started(&mut self, record: usize) {
        let mut joined = Vec::new();
        for index in self.conns.indices() {
            let Some(r) = self.records.get(record) else { return };
            let Some(mux) = self.conns.get_mut(index).and_then(|c| c.mux_mut()) else {
                continue;
            };
            if !mux.takes_new_jobs() {
                continue;
            }
            if let Some(slot) = mux.add(record, &r.log, 0) {
                joined.push(Viewer { conn: index, slot });
            }
        }
        self.woken.extend(joined.iter().map(|viewer| viewer.conn));
        if let Some(r) = self.records.get_mut(record) {
            r.viewers.extend_from_slice(&joined);
        }
    }

    /// Shutdown: an all-jobs stream takes no new job and ends once its jobs
    /// have ended; look at it now, in case they all have.
    pub(super) fn mux_on_shutdown(&mut self) {
        for index in self.conns.indices() {
            if self.conns.get(index).and_then(|c| c.source()) == Some(Source::Mux) {
                self.revisit_conns.push(index);
            }
        }
    }
}
