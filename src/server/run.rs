//! `/run` (contract §3): one command, one stream, no log. The connection
//! pulls like a job viewer: when its socket has room it asks for events
//! ([`Action::Pull`](crate::http::conn::Action)), and the server pumps the
//! job into it — each frame written with `writev` straight from the loop's
//! read buffer, only what the socket refuses copied. The job's pipe events
//! pump it too, while the socket has room. The command stops when the
//! client goes.

use std::time::Instant;

use super::Server;
use crate::http::request::Head;
use crate::job::Reader;
use crate::route::RunRequest;

impl Server {
    /// `GET /run`: spawns the command and starts its stream (an `err`
    /// stream if it cannot start). The connection then pulls.
    pub(super) fn start_stream(&mut self, index: usize, head: &Head, run: RunRequest, now: Instant) {
        let started = self.spawn_job(&run, run.format, Reader::Stream(index), now);
        let Some(conn) = self.conns.get_mut(index) else { return };
        self.metrics.response(200);
        match started {
            Ok(job) => conn.begin_run(head, &run.headers, job, self.config.heartbeat, now, &mut self.timers),
            Err(message) => conn.begin_failed_run(head, &run.headers, run.format, &message, now),
        }
    }

    /// Pumps a `/run` job into its connection while the socket takes it,
    /// and ends the stream with `exit` once the command is done. True when
    /// the connection has more to do now (its stream ended, or it broke).
    pub(super) fn feed_run(&mut self, index: usize, job_index: usize, now: Instant) -> bool {
        let (Some(job), Some(conn)) = (self.jobs.get_mut(job_index), self.conns.get_mut(index)) else {
            return false;
        };
        let room = conn.has_room();
        let pumped = job.pump(
            &mut self.buf,
            room,
            &mut |frame, text| conn.send(frame, text, now),
            &mut self.timers,
            self.poll.registry(),
        );
        self.freed += pumped.released;
        if pumped.capped {
            self.revisit_jobs.push(job_index);
        }
        if let Some(exit) = job.exit_if_done() {
            if job.late_failure().is_some() {
                self.metrics.command_failed_to_start();
            }
            conn.send_last(job.exit_frame(&exit), b"", now);
            self.reap_if_finished(job_index);
            return true;
        }
        conn.is_broken()
    }

    /// The quiet time passed for a `/run` job: its held partial lines go
    /// out (see `Job::on_quiet`). True to revisit the job.
    pub(super) fn quiet_run(&mut self, job_index: usize, index: usize, now: Instant) -> bool {
        let (Some(job), Some(conn)) = (self.jobs.get_mut(job_index), self.conns.get_mut(index)) else {
            return false;
        };
        let room = conn.has_room();
        job.on_quiet(
            &mut self.buf,
            room,
            &mut |frame, text| conn.send(frame, text, now),
            now,
            &mut self.timers,
            self.poll.registry(),
        )
    }
}
