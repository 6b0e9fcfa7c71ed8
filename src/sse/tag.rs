//! The tag of one job's events on a stream that carries many jobs
//! (contract §11.2), made once per job rather than once per event.

use std::rc::Rc;

use super::json::escape_json_into;

/// `"job":"ID","seq":` for one job, the id JSON-escaped: what every event
/// of that job carries inside its JSON object on a multiplexed stream
/// (its own id follows). Made once with the job; each event copies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobTag {
    /// Shared: the encoder holds the tag of the event it encodes next
    /// (a count, not a copy, per event).
    prefix: Rc<[u8]>,
}

impl JobTag {
    /// The tag of the job with id `job`.
    pub fn new(job: &str) -> JobTag {
        let mut text = String::with_capacity(job.len() + 16);
        text.push_str("\"job\":\"");
        escape_json_into(&mut text, job);
        text.push_str("\",\"seq\":");
        JobTag {
            prefix: Rc::from(text.into_bytes()),
        }
    }

    /// The bytes an event carries before its own id.
    pub(super) fn prefix(&self) -> &[u8] {
        &self.prefix
    }

    /// The tag, shared.
    pub(super) fn shared(&self) -> Rc<[u8]> {
        Rc::clone(&self.prefix)
    }
}
